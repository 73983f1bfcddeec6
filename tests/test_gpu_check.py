"""The GPU check's CPU mode (issue 16): the script that will run on a GPU machine runs here,
tiny and short, and writes results.json / results.md of the documented shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check, gpu_e2e

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("torch")
pytest.importorskip("onnx")


def test_quick_cpu_mode_writes_every_stage(tmp_path: Path, town_centre_clip: Path,
                                           yunet_model: Path) -> None:
    if gpu_e2e.missing_requirements():
        pytest.skip(f"the camera ramp needs {gpu_e2e.missing_requirements()}")
    out = tmp_path / "gpu"
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--out", str(out), "--device",
                          "cpu", "--quick", "--clip", str(town_centre_clip), "--yunet",
                          str(yunet_model)], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=280)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    stages = results["stages"]
    assert {name: stages[name]["status"] for name in gpu_check.STAGES} == {
        "environment": "ok", "parity": "ok", "throughput": "ok", "e2e": "ok"}
    assert results["passed"] is True
    assert stages["environment"]["result"]["versions"]["onnxruntime"]

    parity = stages["parity"]["rows"]
    assert {r["model"] for r in parity} >= {"emotion_resnet", "sr_generator", "pnet", "rnet",
                                            "onet", "yunet"}
    probabilities = [r for r in parity if r["probability"]]
    assert {r["model"] for r in probabilities} >= {"emotion_resnet", "pnet", "rnet", "onet",
                                                   "yunet"}
    assert all(r["device"] == "cpu" and r["precision"] == "fp32" for r in parity)
    assert all(r["max_abs_diff"] <= r["target"] == 1e-4 for r in probabilities)

    throughput = stages["throughput"]["rows"]
    emotion = {(r["backend"], r["batch_size"]) for r in throughput
               if r["model"] == "emotion_resnet"}
    assert emotion == {("onnxruntime", 1), ("onnxruntime", 4), ("torch", 1), ("torch", 4)}
    assert all(r["items_per_s"] > 0 for r in throughput)
    assert any(r["model"].startswith("mtcnn ") for r in throughput)

    e2e = stages["e2e"]
    assert [r["cameras"] for r in e2e["runs"]] == [1]
    run1 = e2e["runs"][0]
    assert run1["per_camera"][0]["decoded_fps"] > 0
    assert "detect" in " ".join(run1["stage_ms_per_call"])
    text = (out / "results.md").read_text()
    for heading in ("## environment: ok", "## parity: ok", "## throughput: ok", "## e2e: ok"):
        assert heading in text
    assert "| model | output | device | precision | max_abs_diff | target | pass |" in text


def test_cuda_request_on_a_cpu_machine_skips_the_device_stages(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = gpu_check.main(["--out", str(tmp_path), "--device", "cuda:0",
                           "--stages", "environment,parity,throughput"])
    results = json.loads((tmp_path / "results.json").read_text())
    assert code == 0
    assert results["stages"]["environment"]["result"]["cuda_available"] is False
    for name in ("parity", "throughput"):
        assert results["stages"][name] == {"status": "skipped", "seconds": pytest.approx(0, abs=1),
                                           "reason": "cuda:0 is not available here"}


def test_failed_parity_row_fails_the_check() -> None:
    results = {"stages": {"parity": {"status": "ok", "rows": [
        {"pass": True}, {"pass": False}]}}}
    assert gpu_check.passed(results) is False
    results["stages"]["parity"]["rows"] = [{"pass": True}]
    assert gpu_check.passed(results) is True
    results["stages"]["e2e"] = {"status": "failed", "error": "boom"}
    assert gpu_check.passed(results) is False


def test_ramp_config_puts_every_model_on_the_device() -> None:
    tree = gpu_e2e.pipeline_tree("cuda:0", 5.0, "cuda")
    assert tree["detector"]["runtime"] == {"backend": "torch", "device": "cuda:0",
                                           "precision": "fp16"}
    assert tree["enhance"]["backend"] == "torch" and tree["enhance"]["method"] == "sr"
    assert tree["classify"]["device"] == "cuda:0"
    assert tree["cameras"][0]["hwaccel"] == "cuda"
    from pipeline.config import AppConfig

    AppConfig.model_validate(tree)  # a valid config, unknown keys rejected
