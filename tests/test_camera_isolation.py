"""One camera that cannot be constructed never stops the others (issue 11, start-up)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from pipeline.config import CameraConfig, parse_config
from pipeline.errors import PipelineError
from pipeline.runner import LiveRunner
from pipeline.sinks.embedded import EmbeddedRedis
from tests.helpers.media import make_clip


def _config(tmp_path: Path, redis_url: str, cameras: list[CameraConfig]):
    config = parse_config(f"""
station: {{id: iso}}
redis: {{url: {redis_url}, publish_max_wait_ms: 0}}
spool: {{dir: {tmp_path / 'spool'}}}
""")
    # model_copy skips validation: a camera the config model would refuse (a URL from an
    # older config or another tool) reaches the runner and must fail alone
    return config.model_copy(update={"cameras": cameras})


def test_bad_camera_is_skipped_and_the_good_one_runs(tmp_path: Path,
                                                     redis_server: EmbeddedRedis) -> None:
    clip = make_clip(tmp_path / "good.mp4", count=50)
    good = CameraConfig(id="good", url=str(clip), analysis_fps=5)
    bad = CameraConfig(id="good", url=str(clip)).model_copy(
        update={"id": "typo", "url": "rtps://10.0.0.5/stream1"})
    runner = LiveRunner(_config(tmp_path, redis_server.url, [bad, good]))
    thread = threading.Thread(target=runner.run, kwargs={"duration_s": 30}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 20
        def decoded() -> int:
            camera = runner.cameras.get("good")
            return camera.health().frames_decoded if camera is not None else 0

        while time.monotonic() < deadline and decoded() < 10:
            time.sleep(0.1)
        assert runner.cameras["good"].health().frames_decoded >= 10
        assert "typo" not in runner.cameras
        assert "unsupported scheme 'rtps'" in runner.failed_cameras["typo"]
        assert runner.metrics.total("camera_start_failed", "typo") == 1
        # the alerting target (cctv_analysis_fps_target) is exported for the running camera
        # only, and withdrawn when the camera stops or moves to another worker
        target = 'cctv_analysis_fps_target{camera="%s"}'
        exposition = generate_latest(runner.metrics.registry).decode()
        assert target % "good" + " 5.0" in exposition and target % "typo" not in exposition
        runner.stop_cameras(["good"])
        assert target % "good" not in generate_latest(runner.metrics.registry).decode()
    finally:
        runner.stop()
        thread.join(timeout=20)
    assert not thread.is_alive()


def test_no_camera_starts_fails_with_the_reasons(tmp_path: Path,
                                                 redis_server: EmbeddedRedis) -> None:
    bad = CameraConfig(id="x", url="rtsp://h/a").model_copy(update={"url": "rtps://h/a"})
    runner = LiveRunner(_config(tmp_path, redis_server.url, [bad]))
    with pytest.raises(PipelineError, match=r"no camera could be started.*rtps"):
        runner.run(duration_s=5)
