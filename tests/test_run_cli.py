"""`python -m pipeline.run` as an operator runs it: live RTSP cameras, a private Redis,
Prometheus metrics, SIGTERM to stop, and no password in any log line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import redis

from pipeline.events import FaceTrackEventV1, from_fields
from pipeline.sinks.embedded import EmbeddedRedis
from pipeline.sinks.streams import events_stream
from tests.helpers.rtsp_server import RtspServerProcess, free_port

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "Sup3r-s3cret!pw"
pytest.importorskip("insightface", reason="the demo clip is built from insightface's photo")


def _metrics_text(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        return response.read().decode()


def test_run_cli_live_cameras_metrics_sigterm_and_masked_passwords(
        tmp_path: Path, redis_server: EmbeddedRedis, redis_client: redis.Redis) -> None:
    from pipeline.demo_clip import build_demo_clip

    media = tmp_path / "media"
    build_demo_clip(media / "demo.mp4", seconds=3)
    server = RtspServerProcess(media, tmp_path / "rtsp.log")
    server.start()
    metrics_port = free_port()
    config = tmp_path / "station.yaml"
    config.write_text(f"""
station: {{id: st1}}
cameras:
  - id: entrance
    url: "{server.url('demo.mp4')}"
    credentials: {{username_env: CAM_USER, password_env: CAM_PASSWORD}}
  - id: broken
    url: rtsp://127.0.0.1:{free_port()}/offline
    credentials: {{username_env: CAM_USER, password_env: CAM_PASSWORD}}
source:
  open_timeout_s: 2
  read_timeout_s: 2
  reconnect: {{initial_delay_s: 0.2, max_delay_s: 0.5}}
redis: {{url: "{redis_server.url}", publish_max_wait_ms: 0}}
spool: {{dir: {tmp_path / 'spool'}}}
metrics: {{port: {metrics_port}}}
logging: {{level: DEBUG}}
""")
    env = {**os.environ, "CAM_USER": "operator", "CAM_PASSWORD": PASSWORD}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.run", "--config", str(config),
         "--status-interval-s", "1"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stream = events_stream("cctv", "st1", "entrance")
    try:
        deadline = time.monotonic() + 60
        metrics = ""
        while time.monotonic() < deadline:
            if process.poll() is not None:
                break
            if redis_client.xlen(stream) >= 2:
                try:
                    metrics = _metrics_text(metrics_port)
                except OSError:
                    metrics = ""
                if 'cctv_source_reconnects_total{camera="broken"}' in metrics:
                    break
            time.sleep(0.2)
        assert process.poll() is None, "pipeline.run exited early"
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        server.stop()
    assert process.returncode == 0, output[-3000:]
    events = [from_fields(f) for _id, f in redis_client.xrange(stream)]
    assert len(events) >= 2 and all(isinstance(e, FaceTrackEventV1) for e in events)
    assert 'cctv_source_frames_decoded_total{camera="entrance"}' in metrics
    assert "camera broken: cannot open rtsp://127.0.0.1" in output  # failures are logged ...
    assert "rtsp://operator:***@127.0.0.1" in output  # ... with the password masked
    assert PASSWORD not in output
    assert "Sup3r-s3cret%21pw" not in output
