"""Health endpoints on the metrics HTTP server: the server itself against a scripted probe
object, then a real ``cctv-run`` with two RTSP cameras on loopback and a real Redis: /livez,
/readyz, /status and /metrics answer, one camera's server is killed and its state changes in
/status and in the metrics; a run whose cameras all fail for good exits 4."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families

from pipeline.config import CameraConfig
from pipeline.errors import PipelineError
from pipeline.health_server import HealthServer, ProbeResult, probe
from pipeline.sinks.embedded import EmbeddedRedis
from tests.helpers.media import make_clip
from tests.helpers.rtsp_server import RtspServerProcess, free_port
from tests.helpers.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
CAMERA_PASSWORD = "Cam-pw-9!secret"


def _get(url: str, timeout_s: float = 3.0) -> tuple[int, str, str]:
    """(status, content type, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


class _ScriptedProbes:
    def __init__(self) -> None:
        self.live = ProbeResult(True, "running")
        self.ready = ProbeResult(False, "redis unreachable and the spool is full")
        self.payload: dict[str, Any] = {"cameras": {"a": {"state": "streaming"}}}

    def liveness(self) -> ProbeResult:
        return self.live

    def readiness(self) -> ProbeResult:
        return self.ready

    def status(self) -> dict[str, Any]:
        if self.payload is None:
            raise RuntimeError("status broke")
        return self.payload


def test_health_server_routes_probes_and_errors() -> None:
    registry = CollectorRegistry()
    Counter("demo_things", "Things", registry=registry).inc(3)
    probes = _ScriptedProbes()
    server = HealthServer(registry, probes, host="127.0.0.1", port=0)
    server.start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        status, content_type, body = _get(base + "/metrics")
        assert status == 200 and content_type.startswith("text/plain")
        assert "demo_things_total 3.0" in body
        status, _, body = _get(base + "/livez")
        assert status == 200 and json.loads(body) == {"ok": True, "reason": "running"}
        status, content_type, body = _get(base + "/readyz")
        assert status == 503 and content_type == "application/json"
        assert json.loads(body)["reason"] == "redis unreachable and the spool is full"
        probes.ready = ProbeResult(True, "redis up")
        assert _get(base + "/readyz?verbose=1")[0] == 200
        assert json.loads(_get(base + "/status")[2]) == probes.payload
        assert _get(base + "/nope")[0] == 404
        probes.live = ProbeResult(False, "run loop has not ticked for 31.0 s")
        assert _get(base + "/livez")[0] == 503
        probes.payload = None  # a probe that raises answers 500; the server lives on
        assert _get(base + "/status")[0] == 500
        assert _get(base + "/metrics")[0] == 200
        assert probe(base + "/readyz") == 0 and probe(base + "/livez") == 1
        assert probe("file:///etc/passwd") == 1
        # the address is taken: a clear error, not a traceback from the socket layer
        with pytest.raises(PipelineError, match=f"cannot listen on 127.0.0.1:{server.port}"):
            HealthServer(registry, None, port=server.port).start()
    finally:
        server.stop()
    assert probe(base + "/livez", timeout_s=0.5) == 1  # stopped: nothing answers


def test_probe_cli_exit_status() -> None:
    registry = CollectorRegistry()
    server = HealthServer(registry, None, port=0)
    server.start()
    try:
        ok = subprocess.run([sys.executable, "-m", "pipeline.health_server", "--probe",
                             f"http://127.0.0.1:{server.port}/metrics"], cwd=REPO, timeout=30)
        missing = subprocess.run([sys.executable, "-m", "pipeline.health_server", "--probe",
                                  f"http://127.0.0.1:{server.port}/livez"], cwd=REPO,
                                 timeout=30)
    finally:
        server.stop()
    assert ok.returncode == 0
    assert missing.returncode == 1  # no probes registered: /livez is 404


def _metric(text: str, name: str, **labels: str) -> float | None:
    """The value of the first sample ``name`` whose labels include ``labels``."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                return sample.value
    return None


@pytest.mark.slow
def test_run_serves_health_and_sees_a_camera_die(tmp_path: Path,
                                                 redis_server: EmbeddedRedis) -> None:
    pytest.importorskip("insightface", reason="the demo clip is built from insightface's photo")
    from pipeline.demo_clip import build_demo_clip

    faces_dir, plain_dir = tmp_path / "faces", tmp_path / "plain"
    build_demo_clip(faces_dir / "demo.mp4", seconds=3)
    make_clip(plain_dir / "clip.mp4", count=75, fps=25, width=320, height=240)
    entrance = RtspServerProcess(faces_dir, tmp_path / "rtsp-entrance.log")
    platform = RtspServerProcess(plain_dir, tmp_path / "rtsp-platform.log")
    entrance.start()
    platform.start()
    port = free_port()
    config = tmp_path / "station.yaml"
    config.write_text(f"""
station: {{id: st1}}
cameras:
  - id: entrance
    url: "{entrance.url('demo.mp4')}"
    credentials: {{username_env: CAM_USER, password_env: CAM_PASSWORD}}
  - id: platform
    url: "{platform.url('clip.mp4')}"
    credentials: {{username_env: CAM_USER, password_env: CAM_PASSWORD}}
source:
  open_timeout_s: 2
  read_timeout_s: 1
  stall_timeout_s: 2
  reconnect: {{initial_delay_s: 0.2, max_delay_s: 0.5}}
redis: {{url: "{redis_server.url}", publish_max_wait_ms: 0}}
spool: {{dir: {tmp_path / 'spool'}}}
logging: {{format: json, level: DEBUG}}
""")
    # the metrics port comes from the environment: the override path the images use
    env = {**os.environ, "CAM_USER": "operator", "CAM_PASSWORD": CAMERA_PASSWORD,
           "CCTV__METRICS__PORT": str(port), "CCTV__METRICS__HOST": "127.0.0.1"}
    cctv_run = Path(sys.executable).with_name("cctv-run")
    process = subprocess.Popen([str(cctv_run), "--config", str(config),
                                "--status-interval-s", "2"],
                               cwd=REPO, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"

    def answer(path: str) -> tuple[int, str]:
        if process.poll() is not None:
            raise AssertionError(f"cctv-run exited early with {process.returncode}")
        try:
            status, _, body = _get(base + path)
        except OSError:
            return 0, ""
        return status, body

    def status() -> dict[str, Any]:
        code, body = answer("/status")
        return json.loads(body) if code == 200 else {}

    try:
        wait_for(lambda: answer("/readyz")[0] == 200, timeout_s=45)
        live_code, live_body = answer("/livez")
        assert live_code == 200 and json.loads(live_body)["ok"] is True
        ready = json.loads(answer("/readyz")[1])
        assert ready == {"ok": True, "reason": "redis up"}

        def both_analysed_with_events() -> bool:
            cams = status().get("cameras", {})
            return (all(cams.get(c, {}).get("state") == "streaming" and
                        cams[c]["frames_analysed"] > 0 for c in ("entrance", "platform"))
                    and cams["entrance"]["events"] > 0
                    and cams["entrance"]["last_event_publish_ts_s"] is not None)

        wait_for(both_analysed_with_events, timeout_s=60)
        before = status()
        cams = before["cameras"]
        assert before["station"] == "st1" and before["phase"] == "running"
        assert before["live"]["ok"] and before["ready"]["ok"]
        assert cams["platform"]["decoded_fps"] > 0 and cams["platform"]["analysed_fps"] > 0
        assert cams["platform"]["url"] == platform.url("clip.mp4")  # no password in it
        assert cams["entrance"]["faces_detected"] > 0
        assert cams["entrance"]["last_event_frame_ts_s"] <= cams["entrance"][
            "last_event_publish_ts_s"] <= time.time()
        assert before["publisher"]["redis_up"] is True
        assert before["publisher"]["events_queued"] >= cams["entrance"]["events"] > 0
        assert before["spool"]["accepting"] is True and before["spool"]["depth"] == 0

        metrics = answer("/metrics")[1]
        assert _metric(metrics, "cctv_source_state", camera="platform", state="streaming") == 1
        assert _metric(metrics, "cctv_frames_analysed_total", camera="platform") > 0
        assert _metric(metrics, "cctv_faces_detected_total", camera="entrance") > 0
        assert _metric(metrics, "cctv_crops_classified_total", camera="entrance") > 0
        assert _metric(metrics, "cctv_face_events_total", camera="entrance") > 0
        assert _metric(metrics, "cctv_analysis_fps", camera="platform") > 0
        # what CctvAnalysisFallingBehind compares: detection passes against analysis_fps
        assert _metric(metrics, "cctv_detector_runs_total", camera="platform") > 0
        assert _metric(metrics, "cctv_analysis_fps_target", camera="platform") == \
            CameraConfig.model_fields["analysis_fps"].default
        assert _metric(metrics, "cctv_redis_up") == 1
        assert _metric(metrics, "cctv_spool_depth_entries") == 0
        assert _metric(metrics, "cctv_published_total", kind="event") > 0
        latency_count = _metric(metrics, "cctv_event_latency_seconds_count")
        latency_sum = _metric(metrics, "cctv_event_latency_seconds_sum")
        assert latency_count > 0 and 0 < latency_sum / latency_count < 30
        assert _metric(metrics, "cctv_build_info", version="0.1.0") == 1
        assert _metric(metrics, "process_resident_memory_bytes") > 0
        # the catch-all counter existing scrapes use is still there
        assert _metric(metrics, "cctv_events_total", camera="platform",
                       kind="frames_analysed") > 0

        platform.stop()  # the camera loses power: connections close, reconnects are refused

        def platform_down() -> bool:
            cam = status().get("cameras", {}).get("platform", {})
            return cam.get("state") in ("reconnecting", "connecting") and cam["reconnects"] > 0

        wait_for(platform_down, timeout_s=20)
        after = status()
        assert after["cameras"]["entrance"]["state"] == "streaming"
        assert after["cameras"]["platform"]["last_error"]
        assert after["ready"]["ok"], "one camera down does not make the worker unready"
        assert answer("/livez")[0] == 200 and answer("/readyz")[0] == 200
        metrics = answer("/metrics")[1]
        assert _metric(metrics, "cctv_source_state", camera="platform", state="streaming") == 0
        assert _metric(metrics, "cctv_source_state", camera="entrance", state="streaming") == 1
        assert _metric(metrics, "cctv_source_reconnects_total", camera="platform") > 0
        assert _metric(metrics, "cctv_source_errors_total", camera="platform") > 0

        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        entrance.stop()
        platform.stop()
    assert process.returncode == 0, output[-3000:]
    records = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    assert records and len(records) == len(output.splitlines()), "every log line is JSON"
    assert {r["station"] for r in records} == {"st1"}
    assert any(r["camera"] == "platform" and "reconnecting" in r["message"] for r in records)
    assert any(r["camera"] == "entrance" for r in records)
    assert CAMERA_PASSWORD not in output
    assert any("operator:***@127.0.0.1" in r["message"] for r in records)


@pytest.mark.slow
def test_run_exits_4_when_every_camera_fails_for_good(tmp_path: Path,
                                                      redis_server: EmbeddedRedis) -> None:
    """Missing credentials are a permanent camera error: with every camera failed the run
    stops by itself with exit 4 (docs/exit_codes.md) instead of idling."""
    config = tmp_path / "station.yaml"
    config.write_text(f"""
station: {{id: st2}}
cameras:
  - id: gate-a
    url: rtsp://127.0.0.1:{free_port()}/a
    credentials: {{password_env: CCTV_TEST_UNSET_PASSWORD_A}}
  - id: gate-b
    url: rtsp://127.0.0.1:{free_port()}/b
    credentials: {{password_env: CCTV_TEST_UNSET_PASSWORD_B}}
redis: {{url: "{redis_server.url}"}}
spool: {{dir: {tmp_path / 'spool'}}}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCTV_TEST_UNSET")}
    result = subprocess.run([sys.executable, "-m", "pipeline.run", "--config", str(config),
                             "--duration-s", "60"], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=90)
    assert result.returncode == 4, result.stderr[-3000:]
    assert "every camera failed for good" in result.stderr
    assert "CCTV_TEST_UNSET_PASSWORD_A is not set" in result.stderr
