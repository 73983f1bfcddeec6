"""Enhance + classify stage: a batch of aligned low-res crops in, face events out.

One instance owns the emotion model (and the SR generator, when configured) for its device;
the runner feeds it batches gathered across cameras.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.analyze import CropRequest
from pipeline.config import ClassifyConfig, EnhanceConfig
from pipeline.enhance import Enhancer
from pipeline.errors import ModelError
from pipeline.records import EmotionResult, FaceEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassifiedFace:
    """A face event and the restored crop the classifier saw (for annotation only).

    ``is_face`` is False when the classifier's non-face output rejected the crop (a detector
    false positive: hand, sign, poster); such faces are counted, never published.
    """

    event: FaceEvent
    restored_bgr: np.ndarray = field(repr=False)
    is_face: bool = True
    non_face_probability: float = 0.0


class EmotionStage:
    name = "classify"

    def __init__(self, classify: ClassifyConfig, enhance: EnhanceConfig, crop_size_px: int) -> None:
        self._cfg = classify
        self._enhancer = Enhancer(enhance, crop_size_px, device=classify.device)
        self._model = None

    def start(self) -> None:
        from engines.emotion_model import EmotionModel

        if not self._cfg.model.is_file():
            raise ModelError(f"classify.model: manifest not found: {self._cfg.model}")
        self._model = EmotionModel.load(self._cfg.model, backend=self._cfg.backend,
                                        device=self._cfg.device, threads=self._cfg.threads)
        self._enhancer.start()

    @property
    def class_names(self) -> tuple[str, ...]:
        if self._model is None:
            raise ModelError("EmotionStage.start() was not called")
        return tuple(self._model.class_names)

    def process(self, requests: Sequence[CropRequest]) -> list[ClassifiedFace]:
        if not requests:
            return []
        if self._model is None:
            raise ModelError("EmotionStage.start() was not called")
        enhanced = self._enhancer.process([r.crop_lr_bgr for r in requests],
                                          [r.face_size_px for r in requests])
        prediction = self._model.predict([e.image_bgr for e in enhanced])
        threshold = (self._cfg.non_face_threshold if self._cfg.non_face_threshold is not None
                     else prediction.non_face_threshold)
        names = self.class_names
        results = []
        for request, face, probs, p_non_face in zip(
                requests, enhanced, prediction.probabilities, prediction.non_face_probability,
                strict=True):
            emotion = EmotionResult(names, tuple(round(float(p), 6) for p in probs),
                                    sr_applied=face.sr_applied)
            event = FaceEvent(
                camera_id=request.camera_id, track_id=request.track_id,
                frame_index=request.frame_index, ts_ms=request.ts_ms,
                wall_ts_s=request.wall_ts_s, bbox_xyxy=request.bbox_xyxy,
                face_size_px=request.face_size_px, quality=request.quality, emotion=emotion,
                first_seen_ts_ms=request.first_seen_ts_ms, last_seen_ts_ms=request.last_seen_ts_ms)
            results.append(ClassifiedFace(event, face.image_bgr,
                                          is_face=bool(p_non_face < threshold),
                                          non_face_probability=float(p_non_face)))
        return results

    def stop(self) -> None:
        self._enhancer.stop()
        if self._model is not None and hasattr(self._model, "close"):
            self._model.close()
        self._model = None
