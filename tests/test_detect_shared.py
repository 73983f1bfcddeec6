"""One started detector serves several cameras from their own threads (issue 14)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import DetectorConfig
from pipeline.detect import Detector, create_detector
from pipeline.detect.scan import FaceSizeRange, ScanRegion
from pipeline.records import Detection
from tests.test_detect_backends import group_photo, town_frames  # noqa: F401 - fixture


def _key(detections: list[Detection]) -> list[tuple]:
    return [(d.bbox_xyxy, d.score, None if d.landmarks_xy is None else d.landmarks_xy.tobytes())
            for d in detections]


def _camera_work(detector: Detector, images: list[np.ndarray]) -> list[list[tuple]]:
    """What one camera asks: whole frames, and the same frames in size-limited regions."""
    out = []
    for image in images:
        height, width = image.shape[:2]
        out.append(_key(detector.detect(image)))
        regions = [ScanRegion((0, 0, width, height // 2 + 40), FaceSizeRange(12, 40),
                              (0, 0, width, height // 2)),
                   ScanRegion((0, height // 2 - 40, width, height), FaceSizeRange(20),
                              (0, height // 2, width, height))]
        out.append(_key(detector.detect_regions(image, regions)))
    return out


def _config(backend: str, yunet_model: Path) -> DetectorConfig:
    if backend == "yunet":
        return DetectorConfig(backend="yunet", model_path=yunet_model, min_face_px=12)
    return DetectorConfig(backend="mtcnn", min_face_px=12)


@pytest.mark.parametrize("backend", ["mtcnn", "yunet"])
def test_shared_detector_serves_two_camera_threads_like_separate_ones(
        backend: str, yunet_model: Path, town_frames: list[np.ndarray]) -> None:  # noqa: F811
    photo = group_photo()
    cameras = [[*town_frames[:2], photo], [photo, *town_frames[2:]]]
    separate = []
    for images in cameras:
        detector = create_detector(_config(backend, yunet_model))
        detector.start()
        separate.append(_camera_work(detector, images))
        detector.stop()
    assert any(separate[0]) and any(separate[1])  # faces found, so the comparison means much

    shared = create_detector(_config(backend, yunet_model))
    shared.start()
    results: list[list | None] = [None, None]
    errors: list[BaseException] = []
    start = threading.Barrier(2)

    def camera(index: int) -> None:
        try:
            start.wait()
            for _ in range(2):  # twice over, so the two threads' calls overlap
                results[index] = _camera_work(shared, cameras[index])
        except BaseException as err:  # surfaced below
            errors.append(err)

    threads = [threading.Thread(target=camera, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    shared.stop()
    assert not errors, errors
    assert results == separate


class _ConcurrencyProbe:
    """A graph session proxy counting how many ``run`` calls overlap."""

    def __init__(self, session: object) -> None:
        self._session = session
        self._lock = threading.Lock()
        self.running = 0
        self.most = 0

    def run(self, names: list[str], feeds: dict) -> list:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            return self._session.run(names, feeds)
        finally:
            with self._lock:
                self.running -= 1


def test_yunet_runs_at_most_one_call_per_core_whatever_the_cameras(
        yunet_model: Path, town_frames: list[np.ndarray],  # noqa: F811
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Each concurrent YuNet call holds ~130 MB of activations at a 1080p input: four camera
    threads on a two-core box run at most two calls at once, on one shared session, and get
    what one caller alone gets."""
    monkeypatch.setattr("pipeline.detect.base.usable_cpus", lambda: 2)
    alone = create_detector(_config("yunet", yunet_model))
    alone.start()
    expected = [_key(alone.detect(frame)) for frame in town_frames]
    alone.stop()

    shared = create_detector(_config("yunet", yunet_model))
    shared.start()
    probe = _ConcurrencyProbe(shared._session)
    shared._session = probe
    results: list[list | None] = [None] * 4
    start = threading.Barrier(4)

    def camera(index: int) -> None:
        start.wait()
        results[index] = [_key(shared.detect(frame)) for frame in town_frames]

    threads = [threading.Thread(target=camera, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    shared.stop()
    assert probe.most == 2  # four callers, two slots, all of them used
    assert results == [expected] * 4
