"""Enhance stage: bring an aligned low-resolution face up to the classifier's crop size.

Two methods behind one interface:
- bicubic: the baseline, always available;
- sr: a face super-resolution generator run through an ``engines.runtime`` Engine (ONNX
  Runtime on CPU, TensorRT or torch on GPU), applied only to faces whose size lies inside
  ``sr_size_band_px``; faces outside the band fall back to bicubic. Smaller faces carry too
  little signal for SR to help and larger ones do not need it.

The SR model is loaded, checked and warmed up in ``start()`` so a wrong artifact fails at
start-up, not on the first face. ``engines`` is imported only there: a bicubic-only pipeline
never touches a model.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.config import EnhanceConfig
from pipeline.errors import ModelError

if TYPE_CHECKING:
    from engines.runtime import Engine

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
        self._engine: Engine | None = None

    def start(self) -> None:
        if self.cfg.method != "sr" or self._engine is not None:
            return
        from engines.manifest import load_manifest
        from engines.runtime import create_engine_from_manifest
        from engines.sr_io import output_size_hw, super_resolve

        try:
            manifest = load_manifest(self.cfg.sr_model, expect_task="sr")
            engine = create_engine_from_manifest(manifest, backend=self.cfg.backend,
                                                 device=self._device)
        except ModelError as err:
            raise ModelError(f"enhance.sr_model: {err}") from err
        try:
            # the warm-up goes through super_resolve so a generator whose output size does not
            # match input size x scale_factor is refused here, not on the first face
            height, width = manifest.input_size_hw
            super_resolve(engine, [np.zeros((height, width, 3), dtype=np.uint8)])
        except Exception as err:  # backends raise several unrelated types on a bad graph
            engine.close()
            detail = err if isinstance(err, ModelError) else (
                f"{manifest.onnx_path}: warm-up failed: {type(err).__name__}: {err}")
            raise ModelError(f"enhance.sr_model: {detail}") from err
        self._engine = engine
        log.info("enhance: SR model %s (%s, x%d, input %s -> %s) on %s/%s for faces %s px",
                 manifest.name, self.cfg.sr_model, manifest.scale_factor,
                 list(manifest.input_size_hw), list(output_size_hw(manifest)),
                 self.cfg.backend, self._device, list(self.cfg.sr_size_band_px))

    def in_band(self, face_size_px: float) -> bool:
        """Whether a face of this size gets SR (always False for the bicubic method)."""
        low, high = self.cfg.sr_size_band_px
        return self.cfg.method == "sr" and low <= face_size_px <= high

    def process(self, crops_lr_bgr: Sequence[np.ndarray],
                face_sizes_px: Sequence[float]) -> list[EnhancedFace]:
        if len(crops_lr_bgr) != len(face_sizes_px):
            raise ValueError(f"Enhancer.process: expected one face size per crop "
                             f"({len(crops_lr_bgr)}), got {len(face_sizes_px)}")
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
        if self._engine is None:
            raise ModelError("Enhancer: method 'sr' needs start() before process()")
        from engines.sr_io import super_resolve

        return super_resolve(self._engine, crops_bgr)

    def stop(self) -> None:
        if self._engine is not None:
            self._engine.close()
            self._engine = None
