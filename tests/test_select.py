"""CropSelector: best-of-window selection, rate limiting in stream time, bounded memory."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.config import SelectConfig
from pipeline.errors import PipelineError
from pipeline.records import TrackedFace
from pipeline.select import CropSelector

FRAME_MS = 40.0


def frame(index: int) -> np.ndarray:
    """A 240x320 frame whose pixels encode their own coordinates and the frame index."""
    ys, xs = np.mgrid[0:240, 0:320]
    image = np.stack([xs % 256, ys % 256, np.full_like(xs, index % 256)], axis=2)
    return image.astype(np.uint8)


def face(track_id: int, index: int, x: float = 100.0, size: float = 20.0,
         predicted: bool = False, landmarks: bool = True) -> TrackedFace:
    bbox = (x, 80.0, x + size, 80.0 + size)
    marks = np.array([[x + 6, 88], [x + 14, 88], [x + 10, 92], [x + 7, 96], [x + 13, 96]],
                     dtype=np.float32) if landmarks else None
    return TrackedFace(camera_id="cam", track_id=track_id, frame_index=index,
                       ts_ms=index * FRAME_MS, bbox_xyxy=bbox, score=0.9, landmarks_xy=marks,
                       is_predicted=predicted)


def test_emits_best_of_each_window_at_most_once_per_interval() -> None:
    selector = CropSelector(SelectConfig(interval_s=1.0))
    rng = np.random.default_rng(3)
    qualities = rng.uniform(0.1, 0.9, size=70)
    emitted = []
    for i, q in enumerate(qualities):
        out = selector.offer(face(1, i), float(q), frame(i))
        if out is not None:
            emitted.append((i, out))
    # Windows: frames 0-24 (0..960 ms), 25-49, 50-69; the first two close on frames 25, 50.
    assert [i for i, _ in emitted] == [25, 50]
    assert [s.frame_index for _, s in emitted] == [int(np.argmax(qualities[:25])),
                                                    25 + int(np.argmax(qualities[25:50]))]
    last = selector.end_track(1)
    assert last is not None and last.frame_index == 50 + int(np.argmax(qualities[50:]))
    assert last.quality == pytest.approx(qualities[50:].max())
    assert selector.end_track(1) is None  # emitted once, then forgotten
    assert selector.pending_count == 0


def test_selection_keeps_a_padded_patch_not_the_frame() -> None:
    selector = CropSelector(SelectConfig(patch_pad=0.5))
    image = frame(7)
    selector.offer(face(4, 7, x=100.0, size=20.0), 0.8, image)
    image[:] = 0  # the caller reuses its frame buffer: the selection must not change
    chosen = selector.end_track(4)
    assert chosen is not None
    assert chosen.patch_origin_xy == (90, 70)
    assert chosen.patch_bgr.shape == (40, 40, 3)
    # Patch pixels are the frame's pixels at the stored offset.
    assert chosen.patch_bgr[0, 0].tolist() == [90, 70, 7]
    assert chosen.bbox_in_patch_xyxy() == (10.0, 10.0, 30.0, 30.0)
    marks = chosen.landmarks_in_patch_xy()
    assert marks is not None and np.allclose(marks[0], [16, 18])
    assert chosen.face_size_px == 20.0 and chosen.track_id == 4 and chosen.camera_id == "cam"


def test_patch_is_clipped_at_the_frame_border() -> None:
    selector = CropSelector(SelectConfig(patch_pad=1.0))
    selector.offer(face(1, 0, x=2.0, size=20.0), 0.5, frame(0))
    chosen = selector.end_track(1)
    assert chosen is not None
    assert chosen.patch_origin_xy == (0, 60)
    assert chosen.patch_bgr.shape == (60, 42, 3)


def test_short_track_is_analysed_on_end_only_if_good_enough() -> None:
    selector = CropSelector(SelectConfig(interval_s=1.0, min_quality=0.5))
    for i in range(5):
        assert selector.offer(face(1, i), 0.2 + 0.02 * i, frame(i)) is None
        assert selector.offer(face(2, i, x=200.0), 0.6, frame(i)) is None
    assert selector.end_track(1) is None
    kept = selector.end_track(2)
    assert kept is not None and kept.frame_index == 0  # ties keep the earliest candidate


def test_tracks_are_independent_and_memory_is_one_patch_per_track() -> None:
    selector = CropSelector(SelectConfig(interval_s=0.5))
    for i in range(12):
        for track in range(3):
            selector.offer(face(track, i, x=20.0 + 60 * track), 0.5, frame(i))
    assert selector.pending_count == 3
    due = [selector.offer(face(t, 13, x=20.0 + 60 * t), 0.5, frame(13)) for t in range(3)]
    assert [s.track_id for s in due if s is not None] == [0, 1, 2]


def test_predicted_faces_and_bad_frames_are_rejected() -> None:
    selector = CropSelector(SelectConfig())
    with pytest.raises(PipelineError, match="predicted"):
        selector.offer(face(1, 0, predicted=True), 0.5, frame(0))
    with pytest.raises(PipelineError, match="BGR"):
        selector.offer(face(1, 0), 0.5, np.zeros((10, 10), dtype=np.uint8))
    with pytest.raises(PipelineError, match="outside"):
        selector.offer(face(1, 0, x=5000.0), 0.5, frame(0))
