"""Export parity, manifest checks at load, runtime backends and the evaluation JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.emotion_model import EmotionModel
from engines.manifest import load_manifest, write_manifest
from engines.runtime import create_engine
from engines.train.ferplus import FERPLUS_CLASSES
from pipeline.errors import ModelError
from tests.test_emotion_train import make_synthetic_ferplus, tiny_config


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from engines.build.__main__ import main as build_main
    from engines.train.emotion import train

    tmp = tmp_path_factory.mktemp("emotion_build")
    data = make_synthetic_ferplus(tmp / "data")
    train(tiny_config(data, tmp, epochs=2), tmp / "run")
    out = tmp / "weights" / "tiny_emotion"
    rc = build_main(["emotion", "--checkpoint", str(tmp / "run/best.pt"), "--out", str(out),
                     "--calib-data", str(data / "FER2013Valid"), "--eval-sizes", "48,16",
                     "--calib-sizes", "48,16", "--threads", "2"])
    assert rc == 0
    return {"manifest": out.with_suffix(".json"), "data": data, "dir": out.parent,
            "checkpoint": tmp / "run/best.pt"}


def test_manifest_contents(built: dict[str, Path]) -> None:
    m = load_manifest(built["manifest"], expect_task="emotion",
                      expect_class_names=FERPLUS_CLASSES, expect_input_size_hw=(48, 48))
    assert m.channels == 1 and m.color == "gray" and m.input_size_hw == (48, 48)
    assert len(m.onnx_sha256) == 64 and len(m.checkpoint_sha256) == 64
    assert m.metrics["parity_max_abs_prob_diff"] <= 1e-4
    assert 0.05 < m.temperature < 20
    assert [r["size_px"] for r in m.metrics["accuracy_by_size"]] == [48, 16]
    assert m.training["seed"] == 3 and m.training["config"]["model"]["widths"] == [8, 16]


def test_manifest_refuses_mismatches(built: dict[str, Path], tmp_path: Path) -> None:
    path = built["manifest"]
    with pytest.raises(ModelError, match=r"input_size_hw: expected \[64, 64\], got \[48, 48\]"):
        load_manifest(path, expect_input_size_hw=(64, 64))
    with pytest.raises(ModelError, match=r"class_names: expected \['anger', 'fear'\], got"):
        load_manifest(path, expect_class_names=("anger", "fear"))
    with pytest.raises(ModelError, match=r"task: expected 'sr', got 'emotion'"):
        load_manifest(path, expect_task="sr")
    raw = json.loads(path.read_text())
    for change, pattern in (
        ({"channels": 3}, r"channels: expected 1 for color 'gray', got 3"),
        ({"mean": [0.5, 0.5]}, r"mean: expected 1 numbers"),
        ({"temperature": -1}, r"temperature: expected a positive finite number"),
        ({"surprise": 1}, r"unknown \['surprise'\]"),
        ({"onnx_sha256": "0" * 64}, r"onnx_sha256: expected 0{64}, got [0-9a-f]{64}"),
        ({"onnx_file": "missing.onnx"}, r"onnx_file: expected a file at .*missing.onnx"),
    ):
        bad = built["dir"] / "bad.json"
        bad.write_text(json.dumps({**raw, **change}))
        with pytest.raises(ModelError, match=pattern):
            load_manifest(bad)


def test_emotion_model_probabilities_and_backends(built: dict[str, Path]) -> None:
    model = EmotionModel.load(built["manifest"])
    assert model.class_names == FERPLUS_CLASSES and model.input_size_hw == (48, 48)
    rng = np.random.default_rng(0)
    faces = [rng.integers(0, 255, (64, 64, 3), dtype=np.uint8) for _ in range(5)]
    faces.append(np.full((20, 17, 3), 200, np.uint8))
    probs = model.predict_proba(faces)
    assert probs.shape == (6, 8) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    single = model.predict_proba(faces[:1])  # dynamic batch axis: batch 1 == row of batch 6
    np.testing.assert_allclose(single[0], probs[0], atol=1e-5)
    assert model.predict_proba([]).shape == (0, 8)
    torch_model = EmotionModel.load(built["manifest"], backend="torch")
    np.testing.assert_allclose(torch_model.predict_proba(faces), probs, atol=1e-4)
    # Brightness is the class in the synthetic data: a dark face and a bright face differ.
    dark, bright = np.full((64, 64, 3), 40, np.uint8), np.full((64, 64, 3), 210, np.uint8)
    p = model.predict_proba([dark, bright])
    assert p[0].argmax() != p[1].argmax()


def test_engine_interface(built: dict[str, Path]) -> None:
    engine = create_engine(built["manifest"], backend="onnxruntime", threads=1)
    engine.warmup(batch_size=2)
    out = engine.infer(np.zeros((3, 1, 48, 48), np.float32))
    assert out.shape == (3, 8)
    bad_shape = r"expected shape \(N>=1, 1, 48, 48\), got \(3, 1, 32, 32\)"
    with pytest.raises(ValueError, match=bad_shape):
        engine.infer(np.zeros((3, 1, 32, 32), np.float32))
    engine.close()
    with pytest.raises(ModelError, match="backend: expected one of"):
        create_engine(built["manifest"], backend="openvino")


def test_tensorrt_backend_reports_missing_package_or_plan(built: dict[str, Path]) -> None:
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        with pytest.raises(ModelError, match="expected the TensorRT 10 Python package"):
            create_engine(built["manifest"], backend="tensorrt", device="cuda:0")
        pytest.skip("tensorrt does not import on this machine; only the error path is tested")
    with pytest.raises(ModelError, match="expected a plan at"):
        create_engine(built["manifest"], backend="tensorrt", device="cuda:0",
                      plan_cache_dir=built["dir"] / "no_plans")


def test_write_manifest_round_trip(built: dict[str, Path], tmp_path: Path) -> None:
    m = load_manifest(built["manifest"])
    copy = built["dir"] / "copy.json"
    write_manifest(replace(m, name="copy"), copy)
    assert load_manifest(copy).name == "copy"
    with pytest.raises(ModelError, match="color: expected one of"):
        write_manifest(replace(m, color="hsv"), tmp_path / "x.json")


def test_evaluation_json_shape(built: dict[str, Path], tmp_path: Path) -> None:
    from engines.eval.emotion import main as eval_main

    out = tmp_path / "eval.json"
    rc = eval_main(["--model", str(built["manifest"]), "--data",
                    str(built["data"] / "FER2013Valid"), "--sizes", "48,24,12", "--restore",
                    "bilinear", "--json", str(out), "--fit-temperature", "--threads", "1"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert res["n"] == 32 and res["class_names"] == list(FERPLUS_CLASSES)
    assert [r["size_px"] for r in res["rows"]] == [48, 24, 12]
    for row in res["rows"]:
        assert {"size_px", "restore", "accuracy", "n", "per_class_recall", "confusion",
                "ece", "nll"} <= set(row)
        assert row["restore"] == "bilinear" and row["n"] == 32 and 0 <= row["accuracy"] <= 1
        cm = np.asarray(row["confusion"])
        assert cm.shape == (8, 8) and cm.sum() == 32
        assert np.isclose(np.trace(cm) / 32, row["accuracy"])
        png = cv2.imread(row["confusion_png"])
        assert png is not None and png.shape[0] > 100
    assert res["temperature_fit"]["nll_after"] <= res["temperature_fit"]["nll_before"] + 1e-9


def test_tta_hflip_export_averages_mirror_logits(built: dict[str, Path]) -> None:
    """--tta-hflip bakes mirror averaging into the graph; both backends and plain torch agree."""
    import torch

    from engines.build.__main__ import main as build_main
    from engines.models.resnet import build_resnet

    out = built["dir"] / "tiny_emotion_tta"
    rc = build_main(["emotion", "--checkpoint", str(built["checkpoint"]), "--out", str(out),
                     "--tta-hflip", "--threads", "1"])
    assert rc == 0
    m = load_manifest(out.with_suffix(".json"), expect_task="emotion")
    assert m.architecture["tta_hflip"] is True
    assert load_manifest(built["manifest"]).architecture["tta_hflip"] is False
    plain = build_resnet(load_manifest(built["manifest"]).architecture).eval()
    plain.load_state_dict(torch.load(built["checkpoint"], weights_only=True)["model"])
    x = np.random.default_rng(1).normal(0, 1, (4, 1, 48, 48)).astype(np.float32)
    with torch.inference_mode():
        t = torch.from_numpy(x)
        expected = ((plain(t) + plain(torch.flip(t, dims=[3]))) / 2).numpy()
        assert not np.allclose(plain(t).numpy(), expected, atol=1e-4)  # the mirror matters
    for backend in ("onnxruntime", "torch"):
        engine = create_engine(out.with_suffix(".json"), backend=backend, threads=1)
        np.testing.assert_allclose(engine.infer(x), expected, atol=1e-4)
        engine.close()
