"""One config key picks the detector backend; heavy backend imports happen only when chosen."""

from __future__ import annotations

from pipeline.config import DetectorConfig
from pipeline.detect.base import Detector
from pipeline.errors import ModelError, shown_path


def create_detector(cfg: DetectorConfig) -> Detector:
    """A detector for ``cfg.backend``, not yet started. Raises ModelError naming a missing model.

    The model path is checked here so a wrong path fails at start-up, not on the first frame.
    """
    needs_path = cfg.backend in ("yunet", "scrfd")
    if needs_path and (cfg.model_path is None or not cfg.model_path.is_file()):
        raise ModelError(f"detector.model_path for backend '{cfg.backend}' not found: "
                         f"{shown_path(cfg.model_path)}")
    if cfg.backend == "mtcnn":
        from pipeline.detect.mtcnn import MtcnnDetector

        return MtcnnDetector(cfg)
    if cfg.backend == "yunet":
        from pipeline.detect.yunet import YunetDetector

        return YunetDetector(cfg)
    if cfg.backend == "scrfd":
        from pipeline.detect.scrfd import ScrfdDetector

        return ScrfdDetector(cfg)
    raise ModelError(f"unknown detector backend '{cfg.backend}'")
