"""Supervision parts without a server: backoff, URL checks, a file used as a camera."""

from __future__ import annotations

import random
import threading
import time
from itertools import pairwise
from pathlib import Path

import av
import pytest

from pipeline.analyze import CameraAnalyzer
from pipeline.config import AppConfig, CameraConfig, ReconnectConfig, SourceConfig
from pipeline.detect import create_detector
from pipeline.metrics import RunMetrics
from pipeline.queues import LatestQueue
from pipeline.records import Frame
from pipeline.sources import Backoff, CameraState, PermanentSourceError, SupervisedCamera
from pipeline.sources.decode import DecodedFrame, to_bgr
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
    queue: LatestQueue[DecodedFrame] = LatestQueue(64)
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


def test_live_frames_are_converted_only_when_analysis_reads_them(tmp_path: Path) -> None:
    """A live camera queues decoded frames; the BGR image is made on first read, and the
    analyser reads it only on detection passes (at 5 fps from 25, one frame in five)."""
    clip = make_clip(tmp_path / "sim.mp4", count=10, fps=25)
    with av.open(str(clip)) as container:
        av_frames = list(container.decode(video=0))
    expected = to_bgr(av_frames[3])
    decoded = DecodedFrame(av_frames[3], "sim", 3, 120.0, 0.0)
    assert decoded.size_wh == (160, 120) and decoded._image is None  # known unconverted
    assert (decoded.image_bgr == expected).all()
    assert decoded._av_frame is None  # the decoder's buffer is released once converted
    frame = decoded.to_frame()
    assert isinstance(frame, Frame) and frame.ts_ms == 120.0 and frame.index == 3

    config = AppConfig.model_validate({"detector": {"backend": "mtcnn"}})
    detector = create_detector(config.detector)
    detector.start()
    try:
        analyzer = CameraAnalyzer(CameraConfig(id="sim", url=str(clip), analysis_fps=5.0),
                                  config, detector, RunMetrics())
        frames = [DecodedFrame(f, "sim", i, i * 40.0, 0.0) for i, f in enumerate(av_frames)]
        detected = [analyzer.process(f).detected for f in frames]
    finally:
        detector.stop()
    assert detected == [i % 5 == 0 for i in range(10)]
    assert [f._image is not None for f in frames] == detected
