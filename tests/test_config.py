"""Config validation: unknown keys, wrong types and missing fields are named with their line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.check_config import check_references
from pipeline.config import AppConfig, load_config, parse_config
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _run_check(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.check_config", str(path), *extra],
                          capture_output=True, text=True, cwd=REPO, timeout=60)


@pytest.mark.parametrize("name", ["station.yaml", "demo.yaml", "benchmark.yaml"])
def test_shipped_configs_are_valid(name: str) -> None:
    config = load_config(REPO / "configs" / name)
    assert isinstance(config, AppConfig)


def test_station_yaml_shows_every_default() -> None:
    """Every field of every section appears in station.yaml, so operators see all defaults."""
    tree = yaml.safe_load((REPO / "configs" / "station.yaml").read_text())

    def missing(model: type, node: dict, prefix: str) -> list[str]:
        gaps = []
        for name, field in model.model_fields.items():
            if name not in node:
                gaps.append(prefix + name)
                continue
            annotation = field.annotation
            if isinstance(annotation, type) and hasattr(annotation, "model_fields") \
                    and isinstance(node[name], dict):
                gaps += missing(annotation, node[name], f"{prefix}{name}.")
        return gaps

    assert missing(AppConfig, tree, "") == []
    camera_fields = set(AppConfig.model_fields["cameras"].annotation.__args__[0].model_fields)
    assert camera_fields <= set(tree["cameras"][0])


def test_unknown_key_is_named_with_its_line(tmp_path: Path) -> None:
    """A key no section accepts is named with its line, and the section's keys listed when
    none is close."""
    path = tmp_path / "bad.yaml"
    path.write_text("station:\n  id: s1\ndetector:\n  backend: mtcnn\n  colour: red\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:5: detector.colour: unknown key 'colour' "
                                          r"\(accepted here: backend, max_concurrent_passes"):
        load_config(path)


@pytest.mark.parametrize(("text", "message"), [
    ("detector:\n  backnd: yunet\n", "<string>:2: detector.backnd: unknown key 'backnd' (did "
                                      "you mean 'backend'?)"),
    ("detectr:\n  backend: yunet\n", "<string>:1: detectr: unknown key 'detectr' (did you mean "
                                      "'detector' or 'select'?)"),
    ("cameras:\n  - id: a\n    url: a.mp4\n    analysis_fsp: 5\n",
     "<string>:4: cameras.0.analysis_fsp: unknown key 'analysis_fsp' (did you mean "
     "'analysis_fps'?)"),
    ("detector:\n  motion_gate:\n    enabeld: false\n",
     "<string>:3: detector.motion_gate.enabeld: unknown key 'enabeld' (did you mean 'enabled'?)"),
])
def test_misspelt_key_gets_a_suggestion(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text)
    assert message in str(caught.value)


def test_missing_relative_path_names_the_working_directory(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Config paths are read from where the command runs, so a relative path that is not
    found is shown with that directory."""
    path = tmp_path / "c.yaml"
    path.write_text("classify:\n  model: weights/none.json\n")
    monkeypatch.chdir(tmp_path)
    problems = check_references(load_config(path))
    assert problems == [f"classify.model: file not found: weights/none.json (relative to the "
                        f"working directory {tmp_path})"]


def test_wrong_type_is_named() -> None:
    with pytest.raises(ConfigError, match=r"<string>:3: select.interval_s"):
        parse_config("select:\n  crop_size_px: 64\n  interval_s: often\n")


def test_missing_camera_url_is_named() -> None:
    with pytest.raises(ConfigError, match=r"cameras.0.url: Field required"):
        parse_config("cameras:\n  - id: cam1\n")


def test_inline_password_in_url_is_refused() -> None:
    with pytest.raises(ConfigError, match="holds a password"):
        parse_config("cameras:\n  - id: cam1\n    url: rtsp://admin:secret@10.0.0.1/s\n")


def test_duplicate_camera_ids_refused() -> None:
    with pytest.raises(ConfigError, match="unique"):
        parse_config("cameras:\n  - {id: a, url: a.mp4}\n  - {id: a, url: b.mp4}\n")


def test_yunet_requires_model_path() -> None:
    with pytest.raises(ConfigError, match="model_path is required"):
        parse_config("detector:\n  backend: yunet\n")


def test_check_config_cli_exit_codes(tmp_path: Path) -> None:
    good = _run_check(REPO / "configs" / "demo.yaml")
    assert good.returncode == 0, good.stderr
    assert "valid" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - id: cam1\n    url: rtsp://h/s\n    analysis_fps: -3\n")
    result = _run_check(bad)
    assert result.returncode == 2
    assert "cameras.0.analysis_fps" in result.stderr and "bad.yaml:4" in result.stderr


def test_check_config_reports_missing_model_file(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"classify:\n  model: {tmp_path / 'nope.json'}\n")
    result = _run_check(path)
    assert result.returncode == 2
    assert "classify.model: file not found" in result.stderr


def test_camera_enhance_override_is_validated_and_its_model_checked(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("cameras:\n  - id: cam1\n    url: rtsp://h/s\n    enhance:\n"
                    "      method: sr\n      sr_model: /nowhere/cam1_sr.json\n")
    result = _run_check(path)
    assert result.returncode == 2
    assert "cameras[0] (cam1).enhance.sr_model: file not found: /nowhere/cam1_sr.json" \
        in result.stderr
    path.write_text("cameras:\n  - id: cam1\n    url: rtsp://h/s\n    enhance:\n"
                    "      method: sr\n")
    result = _run_check(path)
    assert result.returncode == 2
    assert "enhance.sr_model is required" in result.stderr


def test_reversed_sr_band_refused() -> None:
    with pytest.raises(ConfigError, match="sr_size_band_px"):
        parse_config("enhance:\n  sr_size_band_px: [40, 12]\n")


@pytest.mark.parametrize(("url", "reason"), [
    ("rtps://10.0.0.5/stream1", "unsupported scheme 'rtps'"),
    ("rtsp:///stream1", "no host"),
    ("rtsp://10.0.0.5:99999/s", "bad port"),
    ("rtsp://10.0.0.5:0/s", "port 0"),
    ("rtsp://10.0.0.5:abc/s", "bad port"),
    ("rtsp:/10.0.0.5/stream1", "mistyped '://'"),
    ("rtsp//10.0.0.5/stream1", "mistyped '://'"),
    ("rtsp:10.0.0.5/stream1", "mistyped '://'"),
    ('"rtsp://10.0.0 .5/stream1"', "white space in the host"),
    ("rtsp://10.0.0.256/stream1", "bad IPv4 address"),
])
def test_camera_url_typos_are_named_with_field_and_line(tmp_path: Path, url: str,
                                                        reason: str) -> None:
    path = tmp_path / "station.yaml"
    path.write_text("station: {id: s1}\ncameras:\n  - id: ok\n    url: rtsp://127.0.0.1/a\n"
                    f"  - id: typo\n    url: {url}\n")
    result = _run_check(path, "--no-files")
    assert result.returncode == 2
    assert f"{path}:6: cameras.1.url" in result.stderr and reason in result.stderr


def test_file_camera_that_does_not_exist_is_named(tmp_path: Path) -> None:
    """A network address without a scheme reads as a file path: check_config says so."""
    path = tmp_path / "station.yaml"
    path.write_text("station: {id: s1}\ncameras:\n  - {id: lobby, url: 10.0.0.5/stream1}\n")
    result = _run_check(path)
    assert result.returncode == 0  # a warning: the file may appear later (the demo's does)
    assert "warning:" in result.stderr
    assert "cameras.0.url (lobby): file not found: 10.0.0.5/stream1" in result.stderr
    assert "needs a scheme" in result.stderr


def test_check_config_refuses_a_cluster_on_an_embedded_redis(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("redis:\n  embedded: true\ncluster:\n  mode: leases\n")
    result = _run_check(path)
    assert result.returncode == 2
    assert "needs the Redis every worker shares" in result.stderr
