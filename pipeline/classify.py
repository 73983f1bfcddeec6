"""Enhance + classify stage: a batch of aligned low-res crops in, face events out.

One instance owns the emotion model (and the SR generators, when configured) for its device;
the runner feeds it batches gathered across cameras. A camera with its own ``enhance`` section
(for example a generator adapted to its footage) gets its own enhancer; cameras with equal
sections share one, so a generator is loaded once however many cameras use it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.analyze import CropRequest
from pipeline.config import ClassifyConfig, EnhanceConfig
from pipeline.enhance import EnhancedFace, Enhancer
from pipeline.errors import ModelError, shown_path
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

    def __init__(self, classify: ClassifyConfig, enhance: EnhanceConfig, crop_size_px: int,
                 camera_enhance: Mapping[str, EnhanceConfig] | None = None) -> None:
        """``camera_enhance``: camera id -> that camera's enhance override."""
        self._cfg = classify
        self._enhancer = Enhancer(enhance, crop_size_px, device=classify.device)
        shared: dict[EnhanceConfig, Enhancer] = {enhance: self._enhancer}
        self._camera_enhancers: dict[str, Enhancer] = {}
        for camera_id, cfg in (camera_enhance or {}).items():
            if cfg not in shared:
                shared[cfg] = Enhancer(cfg, crop_size_px, device=classify.device)
            self._camera_enhancers[camera_id] = shared[cfg]
        self._enhancers = list(shared.values())
        self._model = None

    def start(self) -> None:
        from engines.emotion_model import EmotionModel

        if not self._cfg.model.is_file():
            raise ModelError(f"classify.model: manifest not found: {shown_path(self._cfg.model)}")
        self._model = EmotionModel.load(self._cfg.model, backend=self._cfg.backend,
                                        device=self._cfg.device, threads=self._cfg.threads)
        for enhancer in self._enhancers:
            enhancer.start()

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
        enhanced = self._enhance(requests)
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
                first_seen_ts_ms=request.first_seen_ts_ms, last_seen_ts_ms=request.last_seen_ts_ms,
                run=request.run)
            results.append(ClassifiedFace(event, face.image_bgr,
                                          is_face=bool(p_non_face < threshold),
                                          non_face_probability=float(p_non_face)))
        return results

    def _enhance(self, requests: Sequence[CropRequest]) -> list[EnhancedFace]:
        """Each crop through its camera's enhancer, one batch per enhancer, in input order."""
        groups: dict[Enhancer, list[int]] = {}
        for i, request in enumerate(requests):
            enhancer = self._camera_enhancers.get(request.camera_id, self._enhancer)
            groups.setdefault(enhancer, []).append(i)
        out: list[EnhancedFace | None] = [None] * len(requests)
        for enhancer, indices in groups.items():
            faces = enhancer.process([requests[i].crop_lr_bgr for i in indices],
                                       [requests[i].face_size_px for i in indices])
            for i, face in zip(indices, faces, strict=True):
                out[i] = face
        return out  # type: ignore[return-value]

    def stop(self) -> None:
        for enhancer in self._enhancers:
            enhancer.stop()
        if self._model is not None and hasattr(self._model, "close"):
            self._model.close()
        self._model = None
