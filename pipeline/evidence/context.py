"""What the evidence recorder remembers about recent analysis, per camera: the tracked face
boxes of each analysed frame (for the snapshot's boxes and for blurring faces not in the
alert) and each track's latest restored crops (the images the classifier read).

Written by the analysis threads and the emotion worker, read by the output thread when an
alert fires; every method takes the lock. Bounded: boxes for ``keep_s`` of stream time per
camera, ``crops_per_track`` crops for at most ``max_tracks`` tracks (least recently updated
forgotten first).
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.records import TrackedFace

BoxXyxy = tuple[float, float, float, float]


@dataclass(frozen=True)
class FaceCrop:
    """A restored face crop (BGR uint8, as the classifier read it) of one track."""

    camera_id: str
    track_id: int
    ts_ms: float
    image_bgr: np.ndarray = field(repr=False)
    label: str = ""


class AnalysisContext:
    def __init__(self, keep_s: float, crops_per_track: int, max_tracks: int = 1024) -> None:
        self._keep_ms = keep_s * 1000.0
        self._crops_per_track = crops_per_track
        self._max_tracks = max_tracks
        self._lock = threading.Lock()
        self._boxes: dict[str, deque[tuple[float, dict[int, BoxXyxy]]]] = {}
        self._crops: OrderedDict[tuple[str, int], deque[FaceCrop]] = OrderedDict()

    def note_faces(self, camera_id: str, ts_ms: float, faces: Sequence[TrackedFace]) -> None:
        """The tracked faces of one analysed frame of ``camera_id`` at ``ts_ms``."""
        boxes = {face.track_id: tuple(float(v) for v in face.bbox_xyxy) for face in faces}
        with self._lock:
            history = self._boxes.setdefault(camera_id, deque())
            history.append((ts_ms, boxes))
            while history and history[0][0] < ts_ms - self._keep_ms:
                history.popleft()

    def note_crop(self, crop: FaceCrop) -> None:
        key = (crop.camera_id, crop.track_id)
        with self._lock:
            crops = self._crops.pop(key, None) or deque(maxlen=self._crops_per_track)
            crops.append(crop)
            self._crops[key] = crops
            while len(self._crops) > self._max_tracks:
                self._crops.popitem(last=False)

    def faces_at(self, camera_id: str, ts_ms: float,
                 tolerance_ms: float = 100.0) -> dict[int, BoxXyxy] | None:
        """Track id -> box in the analysed frame nearest ``ts_ms`` (within
        ``tolerance_ms``), or None when no analysed frame is that close."""
        with self._lock:
            history = list(self._boxes.get(camera_id, ()))
        best = min(history, key=lambda item: abs(item[0] - ts_ms), default=None)
        if best is None or abs(best[0] - ts_ms) > tolerance_ms:
            return None
        return dict(best[1])

    def crops_of(self, camera_id: str, track_id: int, until_ts_ms: float) -> list[FaceCrop]:
        """The track's latest crops taken at or before ``until_ts_ms``, oldest first."""
        with self._lock:
            crops = list(self._crops.get((camera_id, track_id), ()))
        return [c for c in crops if c.ts_ms <= until_ts_ms + 1e-3]
