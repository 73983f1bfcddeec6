"""Per-track crop selection: keep the best face of each time window, analyse it once.

Emotion analysis runs per track, not per frame. For every track the selector keeps the
best-quality candidate offered in the current window of ``interval_s`` stream seconds; when
a later offer shows the window is over, it emits that best candidate as a :class:`Selection`
(the caller aligns, enhances and classifies it). When a track ends, a pending candidate is
emitted once, so short tracks are analysed too. Only a padded patch around the pending face
is kept, never the whole frame, so memory stays bounded by the number of live tracks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.config import SelectConfig
from pipeline.errors import PipelineError
from pipeline.records import TrackedFace, face_size_of_box


@dataclass(frozen=True)
class Selection:
    """A face chosen for analysis, with the pixels around it needed to align it later.

    ``patch_bgr`` is a copy of the frame region starting at ``patch_origin_xy`` (frame
    pixels); ``bbox_xyxy`` and ``landmarks_xy`` stay in frame pixels, and the ``*_in_patch``
    helpers shift them into patch coordinates for alignment.
    """

    camera_id: str
    track_id: int
    frame_index: int
    ts_ms: float
    bbox_xyxy: tuple[float, float, float, float]
    landmarks_xy: np.ndarray | None = field(repr=False)
    quality: float
    face_size_px: float
    patch_bgr: np.ndarray = field(repr=False)
    patch_origin_xy: tuple[int, int]

    def bbox_in_patch_xyxy(self) -> tuple[float, float, float, float]:
        ox, oy = self.patch_origin_xy
        x1, y1, x2, y2 = self.bbox_xyxy
        return (x1 - ox, y1 - oy, x2 - ox, y2 - oy)

    def landmarks_in_patch_xy(self) -> np.ndarray | None:
        if self.landmarks_xy is None:
            return None
        return (self.landmarks_xy - np.asarray(self.patch_origin_xy, dtype=np.float32)).astype(
            np.float32)


@dataclass
class _TrackWindow:
    window_start_ts_ms: float
    best: Selection | None = None


class CropSelector:
    """Keeps at most one pending candidate per track. Not thread-safe (one camera, one thread)."""

    def __init__(self, cfg: SelectConfig) -> None:
        self._cfg = cfg
        self._windows: dict[tuple[str, int], _TrackWindow] = {}

    @property
    def pending_count(self) -> int:
        """Tracks holding a candidate patch (what bounds this selector's memory)."""
        return sum(1 for w in self._windows.values() if w.best is not None)

    def offer(self, face: TrackedFace, quality: float, image_bgr: np.ndarray) -> Selection | None:
        """Offer a detected face of the frame ``image_bgr``; return a due selection or None.

        The returned selection is the best candidate of the window that just closed, which
        is never the face being offered: that one opens the next window.
        """
        if face.is_predicted:
            raise PipelineError(f"track {face.track_id}: only detected faces can be offered, "
                                f"got a motion-predicted box")
        if not np.isfinite(quality):
            raise PipelineError(f"track {face.track_id}: expected a finite quality, got {quality}")
        _check_frame(image_bgr)
        key = (face.camera_id, face.track_id)
        window = self._windows.get(key)
        due = None
        if window is None:
            window = self._windows[key] = _TrackWindow(window_start_ts_ms=face.ts_ms)
        elif face.ts_ms - window.window_start_ts_ms >= self._cfg.interval_s * 1000.0:
            due = window.best
            window.best = None
            window.window_start_ts_ms = face.ts_ms
        if quality >= self._cfg.min_quality and (window.best is None
                                                 or quality > window.best.quality):
            window.best = self._candidate(face, float(quality), image_bgr)
        return due

    def end_track(self, track_id: int, camera_id: str | None = None) -> Selection | None:
        """Forget a track; return its pending best candidate if it has one.

        ``camera_id`` may be omitted when this selector serves one camera.
        """
        keys = [k for k in self._windows
                if k[1] == track_id and (camera_id is None or k[0] == camera_id)]
        if len(keys) > 1:
            raise PipelineError(f"track {track_id} exists on cameras {sorted(k[0] for k in keys)}; "
                                f"pass camera_id")
        if not keys:
            return None
        return self._windows.pop(keys[0]).best

    def _candidate(self, face: TrackedFace, quality: float, image_bgr: np.ndarray) -> Selection:
        x1, y1, x2, y2 = face.bbox_xyxy
        width, height = x2 - x1, y2 - y1
        pad = self._cfg.patch_pad
        frame_h, frame_w = image_bgr.shape[:2]
        px1 = int(np.clip(np.floor(x1 - pad * width), 0, frame_w))
        py1 = int(np.clip(np.floor(y1 - pad * height), 0, frame_h))
        px2 = int(np.clip(np.ceil(x2 + pad * width), 0, frame_w))
        py2 = int(np.clip(np.ceil(y2 + pad * height), 0, frame_h))
        if px2 <= px1 or py2 <= py1:
            raise PipelineError(f"track {face.track_id}: box {face.bbox_xyxy} lies outside the "
                                f"{frame_w}x{frame_h} frame")
        patch = image_bgr[py1:py2, px1:px2].copy()  # copy: the frame buffer is not kept
        return Selection(camera_id=face.camera_id, track_id=face.track_id,
                         frame_index=face.frame_index, ts_ms=face.ts_ms,
                         bbox_xyxy=face.bbox_xyxy, landmarks_xy=face.landmarks_xy,
                         quality=quality, face_size_px=face_size_of_box(face.bbox_xyxy),
                         patch_bgr=patch, patch_origin_xy=(px1, py1))


def _check_frame(image_bgr: np.ndarray) -> None:
    if not isinstance(image_bgr, np.ndarray) or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise PipelineError(f"expected an (H, W, 3) BGR frame, got "
                            f"{getattr(image_bgr, 'shape', type(image_bgr).__name__)}")
