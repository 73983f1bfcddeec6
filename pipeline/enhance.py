"""Enhance stage: bring an aligned low-resolution face up to the classifier's crop size.

Two methods behind one interface:
- bicubic: the baseline, always available;
- sr: a face super-resolution generator run through an ``engines.runtime`` Engine (ONNX
  Runtime on CPU, TensorRT or torch on GPU), applied only to faces whose size lies inside
  ``sr_size_band_px``; faces outside the band fall back to bicubic. Smaller faces carry too
  little signal for SR to help and larger ones do not need it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.config import EnhanceConfig
from pipeline.errors import ModelError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnhancedFace:
    image_bgr: np.ndarray
    sr_applied: bool


def bicubic_upscale(image_bgr: np.ndarray, size_px: int) -> np.ndarray:
    if image_bgr.shape[0] == size_px and image_bgr.shape[1] == size_px:
        return image_bgr
    shrinking = image_bgr.shape[0] > size_px
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    return cv2.resize(image_bgr, (size_px, size_px), interpolation=interpolation)


class Enhancer:
    """Upscales batches of aligned low-res crops to ``size_px`` (bicubic or SR in the band)."""

    def __init__(self, cfg: EnhanceConfig, size_px: int, device: str = "cpu") -> None:
        self.cfg = cfg
        self.size_px = size_px
        self._device = device
        self._engine = None

    def start(self) -> None:
        if self.cfg.method != "sr":
            return
        from engines.runtime import create_engine

        try:
            self._engine = create_engine(self.cfg.sr_model, backend=self.cfg.backend,
                                         device=self._device)
        except FileNotFoundError as err:
            raise ModelError(f"enhance.sr_model: {err}") from err
        if self._engine.manifest.task != "sr":
            raise ModelError(f"enhance.sr_model: expected a model with task 'sr', got "
                             f"'{self._engine.manifest.task}' ({self.cfg.sr_model})")
        self._engine.warmup()

    def in_band(self, face_size_px: float) -> bool:
        low, high = self.cfg.sr_size_band_px
        return self._engine is not None and low <= face_size_px <= high

    def process(self, crops_lr_bgr: Sequence[np.ndarray],
                face_sizes_px: Sequence[float]) -> list[EnhancedFace]:
        results: list[EnhancedFace | None] = [None] * len(crops_lr_bgr)
        sr_indices = [i for i, size in enumerate(face_sizes_px) if self.in_band(size)]
        if sr_indices:
            restored = self._super_resolve([crops_lr_bgr[i] for i in sr_indices])
            for i, image in zip(sr_indices, restored, strict=True):
                results[i] = EnhancedFace(bicubic_upscale(image, self.size_px), sr_applied=True)
        for i, crop in enumerate(crops_lr_bgr):
            if results[i] is None:
                results[i] = EnhancedFace(bicubic_upscale(crop, self.size_px), sr_applied=False)
        return results  # type: ignore[return-value]

    def _super_resolve(self, crops_bgr: list[np.ndarray]) -> list[np.ndarray]:
        from engines.sr_model import super_resolve

        return super_resolve(self._engine, crops_bgr)

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
