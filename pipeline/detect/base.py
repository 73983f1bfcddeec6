"""The detector interface every backend implements, and the work all backends share.

:meth:`Detector.detect` handles what is the same for every network: regions of interest,
mapping boxes back to frame pixels, the score / minimum-size gates, and the final NMS.
A backend only turns one BGR image into raw face arrays (:meth:`Detector._detect_image`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.config import DetectorConfig
from pipeline.detect.geometry import Polygon, centres_inside, nms, roi_rectangles
from pipeline.errors import PipelineError
from pipeline.records import Detection


@dataclass(frozen=True)
class FaceArrays:
    """Raw detector output for one image: boxes ``(N, 4)`` xyxy px, scores ``(N,)``,
    landmarks ``(N, 5, 2)`` px in the records' order (or None when the backend has none)."""

    boxes_xyxy: np.ndarray
    scores: np.ndarray
    landmarks_xy: np.ndarray | None = field(default=None, repr=False)

    @staticmethod
    def empty() -> FaceArrays:
        return FaceArrays(np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                          np.zeros((0, 5, 2), np.float32))

    def take(self, index: np.ndarray) -> FaceArrays:
        landmarks = None if self.landmarks_xy is None else self.landmarks_xy[index]
        return FaceArrays(self.boxes_xyxy[index], self.scores[index], landmarks)

    def shifted(self, dx: float, dy: float) -> FaceArrays:
        boxes = self.boxes_xyxy + np.array([dx, dy, dx, dy], dtype=np.float32)
        landmarks = None if self.landmarks_xy is None else self.landmarks_xy + np.array(
            [dx, dy], dtype=np.float32)
        return FaceArrays(boxes, self.scores, landmarks)

    @staticmethod
    def concat(parts: Sequence[FaceArrays]) -> FaceArrays:
        if not parts:
            return FaceArrays.empty()
        has_landmarks = all(p.landmarks_xy is not None for p in parts)
        return FaceArrays(
            np.concatenate([p.boxes_xyxy for p in parts]).astype(np.float32),
            np.concatenate([p.scores for p in parts]).astype(np.float32),
            np.concatenate([p.landmarks_xy for p in parts]).astype(np.float32)
            if has_landmarks else None)


def check_image(image_bgr: np.ndarray) -> None:
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8:
        raise ValueError(f"detect: expected a uint8 numpy array, got {type(image_bgr).__name__} "
                         f"{getattr(image_bgr, 'dtype', '')}")
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"detect: expected shape (H, W, 3) BGR, got {image_bgr.shape}")


class Detector(ABC):
    """A face detector: ``start()`` loads the model, ``detect()`` finds faces, ``stop()``."""

    name: str = "detector"

    def __init__(self, cfg: DetectorConfig) -> None:
        self.cfg = cfg
        self._started = False

    def start(self) -> None:
        """Load the model and warm it up; raises ModelError when it cannot be loaded."""
        if not self._started:
            self._load()
            self._started = True

    def stop(self) -> None:
        """Release the model. Safe to call twice."""
        if self._started:
            self._unload()
            self._started = False

    def detect(self, image_bgr: np.ndarray,
               roi_polygons: Sequence[Polygon] | None = None) -> list[Detection]:
        """Faces in a BGR uint8 image, best score first, boxes and landmarks in its pixels.

        With ``roi_polygons`` the network only sees the bounding rectangles of the polygons
        and only faces whose box centre lies inside a polygon are returned.
        """
        check_image(image_bgr)
        if not self._started:
            raise PipelineError(f"{self.name} detector: call start() before detect()")
        height, width = image_bgr.shape[:2]
        if roi_polygons:
            rects = roi_rectangles(roi_polygons, width, height)
        else:
            rects = [(0, 0, width, height)]
        parts = []
        for x1, y1, x2, y2 in rects:
            found = self._detect_image(image_bgr[y1:y2, x1:x2])
            parts.append(found.shifted(x1, y1) if (x1 or y1) else found)
        faces = FaceArrays.concat(parts)
        faces = faces.take(self._gate(faces, roi_polygons))
        if len(rects) > 1:
            faces = faces.take(nms(faces.boxes_xyxy, faces.scores, self.cfg.nms_iou))
        return self._to_records(faces, width, height)

    def _gate(self, faces: FaceArrays, roi_polygons: Sequence[Polygon] | None) -> np.ndarray:
        boxes = faces.boxes_xyxy
        # face size = the longer box side (records.face_size_of_box), vectorised
        sizes = np.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        keep = (faces.scores >= self.cfg.score_threshold) & (sizes >= self.cfg.min_face_px)
        if roi_polygons:
            keep &= centres_inside(boxes, roi_polygons)
        return np.flatnonzero(keep)

    @staticmethod
    def _to_records(faces: FaceArrays, width: int, height: int) -> list[Detection]:
        order = np.argsort(-faces.scores, kind="stable")
        records = []
        for i in order:
            x1, y1, x2, y2 = (float(v) for v in faces.boxes_xyxy[i])
            box = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
            landmarks = None
            if faces.landmarks_xy is not None:
                landmarks = np.ascontiguousarray(faces.landmarks_xy[i], dtype=np.float32)
            records.append(Detection(bbox_xyxy=box, score=float(faces.scores[i]),
                                     landmarks_xy=landmarks))
        return records

    @abstractmethod
    def _load(self) -> None:
        """Open the model (called once by start)."""

    def _unload(self) -> None:  # noqa: B027 - optional hook
        """Drop the model (called once by stop)."""

    @abstractmethod
    def _detect_image(self, image_bgr: np.ndarray) -> FaceArrays:
        """Faces in one BGR image (a whole frame or one ROI rectangle), in its pixels.

        May return faces below the score threshold or min size; :meth:`detect` gates them.
        """
