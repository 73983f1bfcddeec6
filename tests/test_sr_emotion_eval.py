"""The SR product measure (engines.eval.sr_emotion) end to end on tiny real models and data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engines.eval.sr_emotion import paired_difference
from tests.helpers.tiny_sr import build_sr_onnx, write_sr_manifest
from tests.test_emotion_train import make_synthetic_ferplus, tiny_config


def test_paired_difference_counts_discordant_faces() -> None:
    sr = np.array([1, 1, 1, 0, 0, 1, 1, 0], bool)
    base = np.array([1, 0, 1, 0, 1, 1, 0, 0], bool)
    d = paired_difference(sr, base)
    assert d["sr_only_correct"] == 2 and d["base_only_correct"] == 1 and d["n"] == 8
    assert d["difference_points"] == pytest.approx(100 * 1 / 8)
    diffs = sr.astype(float) - base.astype(float)
    assert d["se_points"] == pytest.approx(100 * diffs.std(ddof=1) / np.sqrt(8))
    same = paired_difference(sr, sr)
    assert same["difference_points"] == 0 and same["se_points"] == 0


def test_sr_emotion_json(tmp_path: Path) -> None:
    from engines.build.__main__ import main as build_main
    from engines.eval.sr_emotion import main as sr_emotion_main
    from engines.train.emotion import train

    data = make_synthetic_ferplus(tmp_path / "data", n_train=48, n_val=24)
    train(tiny_config(data, tmp_path, epochs=1), tmp_path / "run")
    emotion = tmp_path / "weights/emotion"
    assert build_main(["emotion", "--checkpoint", str(tmp_path / "run/best.pt"), "--out",
                       str(emotion), "--threads", "1"]) == 0
    sr_onnx = build_sr_onnx(tmp_path / "weights/sr.onnx", channels=1)
    sr = write_sr_manifest(sr_onnx, tmp_path / "weights/sr.json")
    out = tmp_path / "sr_emotion.json"
    rc = sr_emotion_main(["--sr-model", str(sr), "--emotion-model", str(emotion) + ".json",
                          "--data", str(data), "--sizes", "16", "--train-images", "32",
                          "--epochs", "1", "--batch-size", "16", "--cache-dir", "none",
                          "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert {(r["classifier"], r["restore"], r["size_px"]) for r in res["rows"]} == {
        (c, m, 16) for c in ("shipped", "fine-tuned") for m in ("bilinear", "sr")}
    assert all(r["n"] == 24 and 0 <= r["accuracy"] <= 1 for r in res["rows"])
    acc = {(r["classifier"], r["restore"]): r["accuracy"] for r in res["rows"]}
    for c in res["sr_minus_bilinear"]:
        assert c["n"] == 24 and c["size_px"] == 16
        expected = 100 * (acc[(c["classifier"], "sr")] - acc[(c["classifier"], "bilinear")])
        assert c["difference_points"] == pytest.approx(expected)
    assert res["train_images"] == 32 and res["steps"] == 2
