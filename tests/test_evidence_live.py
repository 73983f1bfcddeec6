"""Alert evidence from a live RTSP camera (real RTSP server on loopback, LiveRunner, real
Redis): the camera's packets (Annex-B H.264 from RTP) are kept in its ring buffer and an
alert's clip is stream-copied to an MP4 that decodes and covers the window to within one
GOP, with its snapshot and crops, referenced in Redis."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from pipeline.config import parse_config
from pipeline.runner import LiveRunner
from pipeline.sinks.embedded import EmbeddedRedis
from pipeline.sinks.streams import evidence_stream
from tests.helpers.evidence import check_evidence, read_evidence
from tests.helpers.rtsp_server import serve_copy

pytest.importorskip("insightface", reason="the demo clip is built from insightface's photo")
GOP_MS = 1000.0


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.demo_clip import build_demo_clip

    return build_demo_clip(tmp_path_factory.mktemp("evidence_live") / "demo.mp4", seconds=4)


def test_live_rtsp_alert_evidence(tmp_path: Path, demo_clip: Path,
                                  redis_server: EmbeddedRedis,
                                  redis_client: redis.Redis) -> None:
    server = serve_copy(demo_clip, tmp_path)
    root = tmp_path / "evidence"
    config = parse_config(f"""
station: {{id: live-ev}}
cameras:
  - {{id: cam, url: "{server.url('demo.mp4')}", analysis_fps: 5}}
redis: {{url: {redis_server.url}, publish_max_wait_ms: 0}}
spool: {{dir: {tmp_path / 'spool'}}}
evidence: {{enabled: true, dir: {root}, pre_s: 1.0, post_s: 1.0, ring_max_s: 8.0}}
alerts:
  rules:
    - {{id: calm, emotions: [neutral, happiness], combine: sum, threshold: 0.3,
       min_duration_s: 1.0, cooldown_s: 600, severity: info}}
""")
    runner = LiveRunner(config)
    thread = threading.Thread(target=runner.run, kwargs={"duration_s": 90}, daemon=True)
    stream = evidence_stream("cctv", "live-ev")
    try:
        thread.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and redis_client.xlen(stream) < 1:
            time.sleep(0.2)
        assert redis_client.xlen(stream) >= 1, "no evidence message from the live camera"
    finally:
        runner.stop()
        thread.join(timeout=30)
        server.stop()
    assert not thread.is_alive()

    alerts, messages = read_evidence(redis_client, "live-ev")
    kinds = check_evidence(root, alerts, messages, (640, 360), 1000.0, GOP_MS)
    assert kinds["clip"] == kinds["snapshot"] == len(alerts) and kinds.get("crop", 0) >= 1
    # the first written was written because the video passed its window; the others may
    # have been cut short by the stop, and say so
    assert messages[0].complete, messages[0].notes
    assert runner.metrics.total("evidence_written") == sum(kinds.values())
    assert runner.metrics.total("evidence_failed") == 0
