"""Frozen, typed records passed between stages.

Units and formats are in the names: ``bbox_xyxy`` is pixels in the frame as
``(x1, y1, x2, y2)``, ``ts_ms`` is the presentation time in milliseconds from the start of
the stream, ``landmarks_xy`` is a ``(5, 2)`` float32 array in frame pixels ordered
left eye, right eye, nose, left mouth corner, right mouth corner (left/right as seen in the image).
Arrays are validated once, here, at construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _check_image(name: str, image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError(f"{name}: expected a uint8 numpy array, got {type(image).__name__} "
                         f"{getattr(image, 'dtype', '')}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name}: expected shape (H, W, 3) BGR, got {image.shape}")


def face_size_of_box(bbox_xyxy: tuple[float, float, float, float] | np.ndarray) -> float:
    """Face size in px: the longer side of a detector's face box.

    Face boxes are taller than wide (MTCNN, YuNet and SCRFD all box forehead to chin), so the
    longer side is the face height, and a face an operator calls "12 px" (12 px wide, or
    about 5 px between the eyes) has a box at least 12 px long. Gating on the shorter side
    dropped 2 of 3 such faces (benchmarks/small_face_recall.py). One definition for the
    detector gate (``detector.min_face_px``), track selection, SR size bands and events.
    """
    x1, y1, x2, y2 = (float(v) for v in bbox_xyxy[:4])
    return max(x2 - x1, y2 - y1)


@dataclass(frozen=True)
class Frame:
    """One decoded video frame, BGR uint8, with its position in the stream."""

    camera_id: str
    index: int
    ts_ms: float
    image_bgr: np.ndarray = field(repr=False)
    wall_ts_s: float = 0.0
    # Recording segment: incremented at each timestamp discontinuity (see StreamClock).
    # Tracks from an earlier segment end when a frame of a later one arrives, even if the
    # frames in between were dropped by a live queue.
    segment: int = 0

    def __post_init__(self) -> None:
        _check_image("Frame.image_bgr", self.image_bgr)

    @property
    def size_wh(self) -> tuple[int, int]:
        return int(self.image_bgr.shape[1]), int(self.image_bgr.shape[0])


@dataclass(frozen=True)
class Detection:
    """A face found by a detector: box, confidence, five landmarks."""

    bbox_xyxy: tuple[float, float, float, float]
    score: float
    landmarks_xy: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if len(self.bbox_xyxy) != 4:
            raise ValueError(f"Detection.bbox_xyxy: expected 4 values, got {len(self.bbox_xyxy)}")
        if self.landmarks_xy is not None and self.landmarks_xy.shape != (5, 2):
            raise ValueError(
                f"Detection.landmarks_xy: expected shape (5, 2), got {self.landmarks_xy.shape}")

    @property
    def width_px(self) -> float:
        return self.bbox_xyxy[2] - self.bbox_xyxy[0]

    @property
    def height_px(self) -> float:
        return self.bbox_xyxy[3] - self.bbox_xyxy[1]

    @property
    def size_px(self) -> float:
        """Face size (see :func:`face_size_of_box`), the number ``min_face_px`` gates on."""
        return face_size_of_box(self.bbox_xyxy)


@dataclass(frozen=True)
class TrackedFace:
    """A detection (or a motion prediction) attached to a stable track id in one frame."""

    camera_id: str
    track_id: int
    frame_index: int
    ts_ms: float
    bbox_xyxy: tuple[float, float, float, float]
    score: float
    landmarks_xy: np.ndarray | None = field(default=None, repr=False)
    is_predicted: bool = False  # True when the box comes from motion only (no detection)


@dataclass(frozen=True)
class EmotionResult:
    """Classifier output for one crop: calibrated class probabilities."""

    class_names: tuple[str, ...]
    probabilities: tuple[float, ...]
    sr_applied: bool

    def __post_init__(self) -> None:
        if len(self.class_names) != len(self.probabilities):
            raise ValueError(f"EmotionResult: expected {len(self.class_names)} probabilities, "
                             f"got {len(self.probabilities)}")

    @property
    def top_class(self) -> str:
        return self.class_names[int(np.argmax(self.probabilities))]


@dataclass(frozen=True)
class CameraRun:
    """Who analyses a camera, under which lease: one per start of a camera on a worker.

    ``lease_epoch`` is the fencing epoch of the camera's lease (``cluster.mode: leases``;
    0 in the other modes): a later holder of a camera always has a higher one. ``run_id``
    is random hex drawn at each start, so ``track_uid`` is unique across cameras, workers
    and restarts while tracker ids restart at 1."""

    worker_id: str
    lease_epoch: int
    run_id: str

    def track_uid(self, track_id: int) -> str:
        return f"{self.run_id}-{track_id}"


@dataclass(frozen=True)
class FaceEvent:
    """One analysed face of one track: what the publish stage sends to Redis."""

    camera_id: str
    track_id: int
    frame_index: int
    ts_ms: float
    wall_ts_s: float
    bbox_xyxy: tuple[float, float, float, float]
    face_size_px: float
    quality: float
    emotion: EmotionResult
    first_seen_ts_ms: float
    last_seen_ts_ms: float
    run: CameraRun | None = None  # live cameras; None in replay
