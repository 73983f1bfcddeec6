"""Supervision parts without a server: backoff, URL checks, a file used as a camera."""

from __future__ import annotations

import random
import threading
import time
from itertools import pairwise
from pathlib import Path

import pytest

from pipeline.config import CameraConfig, ReconnectConfig, SourceConfig
from pipeline.queues import LatestQueue
from pipeline.records import Frame
from pipeline.sources import Backoff, CameraState, PermanentSourceError, SupervisedCamera
from pipeline.sources.urls import parse_source_url
from tests.helpers.media import make_clip


def test_backoff_grows_caps_jitters_and_resets() -> None:
    config = ReconnectConfig(initial_delay_s=1.0, max_delay_s=8.0, multiplier=2.0,
                             jitter_fraction=0.2)
    backoff = Backoff(config, random.Random(7))
    delays = [backoff.next_delay_s() for _ in range(2000)]  # a day-long outage must not overflow
    for delay, base in zip(delays[:6], [1.0, 2.0, 4.0, 8.0, 8.0, 8.0], strict=True):
        assert 0.8 * base <= delay <= min(8.0, 1.2 * base)
    assert max(delays) <= 8.0 and len({round(d, 6) for d in delays[4:50]}) > 10  # jittered
    backoff.reset()
    assert 0.8 <= backoff.next_delay_s() <= 1.2
    no_jitter = Backoff(config.model_copy(update={"jitter_fraction": 0.0}))
    assert [no_jitter.next_delay_s() for _ in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]


@pytest.mark.parametrize(("url", "kind"), [
    ("rtsp://10.0.0.5:554/stream1", "network"),
    ("rtsps://cam.example/live", "network"),
    ("footage/cam1.mp4", "file"),
    ("file:///data/cam1.mkv", "file"),
])
def test_source_urls_are_classified(url: str, kind: str) -> None:
    assert parse_source_url(url).kind == kind


@pytest.mark.parametrize(("url", "message"), [
    ("rtsp://", "no host"),
    ("rtsp://cam:99999/x", "out of range"),
    ("ftp://cam/x", "unsupported scheme 'ftp'"),
    ("file://", "no file path"),
])
def test_bad_source_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(PermanentSourceError, match=message):
        parse_source_url(url)


def test_file_camera_is_paced_and_loops(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "sim.mp4", count=10, fps=25)
    queue: LatestQueue[Frame] = LatestQueue(64)
    stop = threading.Event()
    camera = SupervisedCamera(CameraConfig(id="sim", url=str(clip)), SourceConfig(), queue, stop)
    thread = threading.Thread(target=camera.run)
    started = time.monotonic()
    thread.start()
    try:
        deadline = started + 15
        while camera.health().frames_delivered < 25 and time.monotonic() < deadline:
            time.sleep(0.02)
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive()
    health = camera.health()
    assert health.frames_delivered >= 25  # more than the clip holds: it looped
    assert health.errors == 0 and health.reconnects == 0
    assert health.state is CameraState.STOPPED
    assert elapsed >= 0.8 * 24 * 0.040  # real-time pacing, loose lower bound
    frames = [queue.get(timeout=0) for _ in range(len(queue))]
    assert [f.index for f in frames] == list(range(len(frames)))
    assert all(b.ts_ms > a.ts_ms for a, b in pairwise(frames))
