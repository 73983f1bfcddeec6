"""The detector interface every backend implements, and the work all backends share.

:meth:`Detector.detect` and :meth:`Detector.detect_regions` handle what is the same for every
network: regions of interest, the face sizes each region needs (pipeline/detect/scan.py),
mapping boxes back to frame pixels, the score / minimum-size gates, and the final NMS.
A backend only turns one BGR image into raw face arrays for a range of face sizes
(:meth:`Detector._detect_image`); one that can batch work across regions (MTCNN's R-Net and
O-Net) overrides :meth:`Detector._detect_regions` as well.

One started detector may serve several cameras, each calling it from its own thread: a
backend keeps no per-call state on ``self`` (ONNX Runtime sessions are safe to run from
several threads); at most ``detector.max_concurrent_passes`` passes run at once (by default
one per usable CPU per ``detector.threads``; :meth:`Detector._network_slot`).
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from pipeline.config import DetectorConfig
from pipeline.cpus import usable_cpus
from pipeline.detect.geometry import Polygon, centres_inside, nms, roi_rectangles
from pipeline.detect.scan import FaceSizeRange, ScanRegion, centres_in_rect, clip_rect, full_regions
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
        passes = cfg.max_concurrent_passes or max(1, usable_cpus() // cfg.threads)
        self._network_calls = threading.BoundedSemaphore(passes)
        self.max_concurrent_passes = passes

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

    @property
    def full_sizes(self) -> FaceSizeRange:
        """Every face size the config asks for: ``min_face_px`` and up."""
        return FaceSizeRange(float(self.cfg.min_face_px))

    @property
    def rotates_small_faces(self) -> bool:
        """Whether the small-face rotation is on when ``detector.small_face_scan.enabled``
        is null: off here (YuNet, SCRFD; see pipeline/config.py SmallFaceScanConfig)."""
        return False

    @property
    def min_region_px(self) -> int:
        """Smallest region side (px) the network reads reliably: YuNet missed 21 px faces in
        96 px crops and found them in 128 (the motion gate's ``min_region_px`` default, 160,
        comes from that). Regions around single known faces are grown to at least this."""
        return 160

    @property
    def small_face_split_px(self) -> float:
        """Face size (px, longer box side) from which scanning costs about a quarter of the
        pixels of scanning every size: the small-face rotation's default split
        (pipeline/detect/small_faces.py). This default: twice ``min_face_px``."""
        return 2.0 * float(self.cfg.min_face_px)

    def detect(self, image_bgr: np.ndarray,
               roi_polygons: Sequence[Polygon] | None = None) -> list[Detection]:
        """Faces in a BGR uint8 image ``(H, W, 3)``, best score first, boxes and landmarks in
        its pixels; every size from ``min_face_px`` up.

        With ``roi_polygons`` the network only sees the bounding rectangles of the polygons
        and only faces whose box centre lies inside a polygon are returned. Raises ValueError
        for an image of the wrong type or shape, PipelineError before :meth:`start`.
        """
        check_image(image_bgr)
        height, width = image_bgr.shape[:2]
        if roi_polygons:
            rects = roi_rectangles(roi_polygons, width, height)
        else:
            rects = [(0, 0, width, height)]
        return self.detect_regions(image_bgr, full_regions(rects, self.full_sizes), roi_polygons)

    def detect_regions(self, image_bgr: np.ndarray, regions: Sequence[ScanRegion],
                       roi_polygons: Sequence[Polygon] | None = None) -> list[Detection]:
        """Faces in the given regions of a BGR uint8 image ``(H, W, 3)``, each region scanned
        only for its face sizes (never below ``min_face_px``), best score first, in image
        pixels. A face is kept when its box centre lies in its region's keep rectangle and,
        with ``roi_polygons``, inside a polygon. Regions are clipped to the image. Raises
        ValueError for a bad image, PipelineError before :meth:`start`."""
        check_image(image_bgr)
        if not self._started:
            raise PipelineError(f"{self.name} detector: call start() before detect()")
        height, width = image_bgr.shape[:2]
        clipped = []
        for region in regions:
            rect = clip_rect(region.rect_xyxy, width, height)
            if rect is not None:
                clipped.append(ScanRegion(rect, region.sizes, region.keep_xyxy))
        if clipped:
            with self._network_slot():
                faces = self._detect_regions(image_bgr, clipped)
        else:
            faces = FaceArrays.empty()
        faces = faces.take(self._gate(faces, roi_polygons))
        if len(clipped) > 1:
            faces = faces.take(nms(faces.boxes_xyxy, faces.scores, self.cfg.nms_iou))
        return self._to_records(faces, width, height)

    def input_pixels(self, height: int, width: int, sizes: FaceSizeRange) -> int:
        """Pixels the network reads to scan a ``height`` x ``width`` region for ``sizes``: the
        deterministic measure of detection work (summed over MTCNN's pyramid levels). This
        default counts the region at full resolution."""
        return int(height) * int(width)

    def _detect_regions(self, image_bgr: np.ndarray,
                        regions: Sequence[ScanRegion]) -> FaceArrays:
        """Raw faces of every region, in image pixels, each filtered to its keep rectangle.
        Backends that can batch across regions override this."""
        parts = []
        for region in regions:
            x1, y1, x2, y2 = region.rect_xyxy
            found = self._detect_image(image_bgr[y1:y2, x1:x2], region.sizes)
            found = found.shifted(x1, y1) if (x1 or y1) else found
            if region.keep_xyxy is not None:
                found = found.take(np.flatnonzero(centres_in_rect(found.boxes_xyxy,
                                                                  region.keep_xyxy)))
            parts.append(found)
        return FaceArrays.concat(parts)

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

    @contextmanager
    def _network_slot(self) -> Iterator[None]:
        """Hold one of this detector's ``max_concurrent_passes`` slots (taken by
        :meth:`detect_regions`; released when the pass ends or raises).

        Cameras call one shared detector from their own threads; more concurrent passes than
        CPUs do not finish sooner, and each concurrent pass holds its own working memory: its
        ONNX Runtime activations in the session's arena (YuNet: about 130 MB at a 1080p
        input, measured as RSS with 1, 2 and 4 calling threads) and, for MTCNN, its image
        pyramid. Callers beyond the slots wait here. Not re-entrant: a backend must not call
        :meth:`detect` or :meth:`detect_regions` from inside its own pass."""
        with self._network_calls:
            yield

    @abstractmethod
    def _load(self) -> None:
        """Open the model (called once by start)."""

    def _unload(self) -> None:  # noqa: B027 - optional hook
        """Drop the model (called once by stop)."""

    @abstractmethod
    def _detect_image(self, image_bgr: np.ndarray, sizes: FaceSizeRange) -> FaceArrays:
        """Faces of ``sizes`` in one BGR image (a whole frame or one region), in its pixels.

        Scans at the resolution ``sizes`` needs (never finer than ``min_face_px`` needs); may
        return faces below the score threshold or min size, or outside ``sizes``:
        :meth:`detect` gates them.
        """
