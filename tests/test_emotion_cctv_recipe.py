"""The CCTV recipe end to end on tiny data: camera-simulated faces, a not_face output mined
from a clip, EMA and mixup train (loss falls); the build fits the negative logit adjustment,
temperature and non-face threshold; evaluation reports camera conditions, the negative union
and folder layouts in the model's class order."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from engines.emotion_model import EmotionModel
from engines.manifest import load_manifest
from engines.train.config import TrainConfig
from engines.train.emotion import train
from engines.train.ferplus import FERPLUS_CLASSES
from tests.test_cctv_sim import street_clip  # noqa: F401 - fixture
from tests.test_emotion_train import make_synthetic_ferplus


def recipe_config(data: Path, out: Path, clip: Path, yunet: Path) -> TrainConfig:
    return TrainConfig.model_validate({
        "seed": 1, "device": "cpu", "threads": 2, "out_dir": str(out), "log_every": 100,
        "data": {"root": str(data), "cache_dir": str(out / "cache")},
        "model": {"stem_width": 8, "widths": [8, 16], "blocks": [1, 1], "dropout": 0.0},
        "augment": {"rotate_deg": 5.0, "brightness": 0.0, "contrast": 0.0, "erase_prob": 0.1,
                    "mixup_prob": 0.3, "degrade": {"prob": 0.3},
                    "camera": {"enabled": True, "clip": str(clip), "variants": 1, "prob": 0.5,
                               "crop_hw": [240, 320], "min_size_px": 16, "max_size_px": 32,
                               "workers": 1}},
        "nonface": {"enabled": True, "fraction": 0.2, "clips": [str(clip)],
                    "yunet_model": str(yunet), "per_frame_random": 20, "per_frame_near": 2},
        "optim": {"lr": 0.01, "weight_decay": 0.0, "epochs": 3, "batch_size": 16,
                  "warmup_epochs": 0.0, "final_lr_frac": 0.5, "ema_decay": 0.9},
        "eval": {"sizes": [48], "cctv": [{"size_px": 24, "bitrate_kbps": 2000}]},
    })


@pytest.fixture(scope="module")
def recipe(tmp_path_factory: pytest.TempPathFactory, street_clip: Path,  # noqa: F811
           yunet_model: Path) -> dict[str, Path]:
    from engines.build.__main__ import main as build_main

    tmp = tmp_path_factory.mktemp("recipe")
    data = make_synthetic_ferplus(tmp / "data")
    summary = train(recipe_config(data, tmp / "runs", street_clip, yunet_model), tmp / "run")
    out = tmp / "weights" / "tiny_cctv"
    rc = build_main(["emotion", "--checkpoint", str(tmp / "run/best.pt"), "--out", str(out),
                     "--calib-data", str(data / "FER2013Valid"), "--eval-sizes", "48,24",
                     "--calib-sizes", "48,24", "--cctv", "24:2000", "--clip", str(street_clip),
                     "--negative-max-fpr", "0.2", "--non-face-max-reject", "0.05",
                     "--threads", "2"])
    assert rc == 0
    return {"run": tmp / "run", "manifest": out.with_suffix(".json"), "data": data,
            "clip": street_clip, "summary": summary}


def test_recipe_trains_with_camera_faces_and_not_face(recipe: dict) -> None:
    lines = [json.loads(s) for s in (recipe["run"] / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3]
    assert lines[-1]["train_loss"] < lines[0]["train_loss"]
    assert "acc_cctv24_2000k" in lines[-1] and "acc_48" in lines[-1]
    ckpt = torch.load(recipe["run"] / "last.pt", weights_only=True)
    assert ckpt["class_names"] == [*FERPLUS_CLASSES, "not_face"]
    assert ckpt["model"]["fc.weight"].shape[0] == 9
    # the EMA weights are what is evaluated and exported; the raw ones resume training
    assert not torch.equal(ckpt["model"]["fc.weight"], ckpt["model_train"]["fc.weight"])


def test_build_fits_decisions_for_not_face_and_negatives(recipe: dict) -> None:
    m = load_manifest(recipe["manifest"])
    assert m.non_face_class == "not_face" and 0 < m.non_face_threshold <= 1
    assert len(m.logit_bias) == 9 and m.logit_bias[-1] == 0.0
    neg = {c: b for c, b in zip(m.class_names, m.logit_bias, strict=True)}
    assert neg["neutral"] == neg["happiness"] == 0.0
    assert len({neg[c] for c in ("sadness", "anger", "disgust", "fear", "contempt")}) == 1
    fit = m.metrics["non_face_fit"]
    assert fit["faces_rejected_pooled"] <= 0.05
    names = [r["name"] for r in m.metrics["accuracy_by_condition"]]
    assert names == ["clean_48px", "clean_24px", "h264_2000kbps_24px"]
    fit = m.metrics["negative_bias_fit"]
    if fit["beta"] > 0:  # the false-positive budget holds under every condition
        assert fit["worst_fpr"] <= 0.2
        chosen = next(r for r in fit["grid"] if r["beta"] == fit["beta"])
        assert set(chosen["by_condition"]) == {"clean_48px", "clean_24px", "h264_2000kbps_24px"}
    model = EmotionModel.load(recipe["manifest"])
    assert model.class_names == FERPLUS_CLASSES  # the non-face output is not an emotion
    faces = [np.full((48, 48), 128, np.uint8), np.full((20, 20, 3), 60, np.uint8)]
    pred = model.predict(faces)
    assert pred.probabilities.shape == (2, 8)
    assert np.allclose(pred.probabilities.sum(1), 1.0, atol=1e-5)
    assert pred.non_face_probability.shape == (2,) and pred.is_face.dtype == bool


def test_evaluation_reports_camera_conditions(recipe: dict, tmp_path: Path) -> None:
    from engines.eval.emotion import main as eval_main

    out = tmp_path / "eval.json"
    onnx = recipe["manifest"].with_suffix(".onnx")  # the .onnx beside its manifest is accepted
    rc = eval_main(["--model", str(onnx), "--data", str(recipe["data"] / "FER2013Valid"),
                    "--sizes", "24", "--degrade", "cctv", "--bitrate-kbps", "500,4000",
                    "--clip", str(recipe["clip"]), "--json", str(out), "--threads", "1"])
    assert rc == 0
    res = json.loads(out.read_text())
    assert [r["name"] for r in res["rows"]] == [
        "clean_24px", "h264_500kbps_24px", "h264_4000kbps_24px"]
    for row in res["rows"]:
        neg = row["negative_union"]
        assert set(neg["classes"]) == {"sadness", "anger", "disgust", "fear", "contempt"}
        assert {"recall", "precision", "false_positive_rate_neutral_happiness"} <= set(neg)
        assert set(row["per_class_precision"]) == set(FERPLUS_CLASSES)
        assert 0.0 <= row["faces_rejected_as_non_face"] <= 1.0
        assert np.asarray(row["confusion"]).sum() == 32
    assert res["rows"][1]["bitrate_kbps"] == 500 and res["rows"][1]["codec"] == "h264"
    assert res["non_face_class"] == "not_face"


def test_evaluation_folder_layout_with_class_map(recipe: dict, tmp_path: Path) -> None:
    from engines.eval.emotion import main as eval_main

    root = tmp_path / "posed"
    rng = np.random.default_rng(0)
    # folders in an order and naming that differ from the model's classes
    for folder in ("angry", "happy", "neutral"):
        (root / folder).mkdir(parents=True)
        for i in range(3):
            cv2.imwrite(str(root / folder / f"{i}.png"),
                        rng.integers(0, 255, (48, 48), dtype=np.uint8))
    out = tmp_path / "folder.json"
    rc = eval_main(["--model", str(recipe["manifest"]), "--data", str(root), "--layout",
                    "folder", "--class-map", "angry=anger,happy=happiness", "--sizes", "48",
                    "--json", str(out), "--threads", "1"])
    assert rc == 0
    res = json.loads(out.read_text())
    cm = np.asarray(res["rows"][0]["confusion"])
    names = res["class_names"]
    assert names == list(FERPLUS_CLASSES)
    for cls in ("anger", "happiness", "neutral"):
        assert cm[names.index(cls)].sum() == 3
    rc = eval_main(["--model", str(recipe["manifest"]), "--data", str(root), "--layout",
                    "folder", "--class-map", "happy=happiness", "--json", str(out)])
    assert rc == 2  # 'angry' maps to no class: named, exit 2 (docs/exit_codes.md)


def test_evaluation_names_a_wrong_model_file(recipe: dict, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    from engines.eval.emotion import main as eval_main

    lone = tmp_path / "lone.onnx"
    lone.write_bytes(recipe["manifest"].with_suffix(".onnx").read_bytes())
    rc = eval_main(["--model", str(lone), "--data", str(recipe["data"] / "FER2013Valid"),
                    "--json", str(tmp_path / "x.json")])
    assert rc == 2
    assert "needs its manifest beside it" in capsys.readouterr().err


def test_pipeline_drops_non_face_crops_and_counts_them(recipe: dict) -> None:
    from pipeline.analyze import CropRequest
    from pipeline.classify import EmotionStage
    from pipeline.config import ClassifyConfig, EnhanceConfig
    from pipeline.metrics import RunMetrics
    from pipeline.runner import _classify, _faces

    rng = np.random.default_rng(0)
    crops = [CropRequest("cam", t, 1, 40.0, 0.0, (0, 0, 20, 20), 20.0, 0.9,
                         rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for t in range(4)]
    counts = {}
    for threshold in (1e-9, 1.0):  # reject every crop / never reject
        stage = EmotionStage(ClassifyConfig(model=recipe["manifest"],
                                            non_face_threshold=threshold),
                             EnhanceConfig(method="bicubic"), 48)
        stage.start()
        metrics = RunMetrics()
        try:
            kept = _faces(_classify(stage, crops, metrics))
        finally:
            stage.stop()
        counts[threshold] = (len(kept), metrics.total("non_face_rejected"),
                             metrics.total("events"))
    assert counts[1e-9] == (0, 4, 0)
    assert counts[1.0] == (4, 0, 4)


@pytest.mark.parametrize(("extra", "message"), [
    (["--limit", "0"], "--limit: expected >= 1"),
    (["--codec", "hevc"], "apply to --degrade cctv only"),
    (["--layout", "folder", "--class-map", "sad=sadnes"], "classes ['sadnes'] are not the model"),
    (["--layout", "folder", "--class-map", "bored=neutral"], "folders ['bored'] not found"),
    (["--layout", "folder"], "folders ['sad'] name no class"),
])
def test_evaluation_argument_errors_exit_2(recipe: dict, tmp_path: Path, extra: list[str],
                                           message: str, capsys: pytest.CaptureFixture) -> None:
    from engines.eval.emotion import main as eval_main

    (tmp_path / "posed" / "sad").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "posed" / "sad" / "0.png"), np.zeros((48, 48), np.uint8))
    data = tmp_path / "posed" if "--layout" in extra else recipe["data"] / "FER2013Valid"
    rc = eval_main(["--model", str(recipe["manifest"]), "--data", str(data),
                    "--json", str(tmp_path / "x.json"), *extra])
    assert rc == 2
    assert message in capsys.readouterr().err


def test_track_level_evaluation_json(recipe: dict, tmp_path: Path) -> None:
    from engines.eval.tracks import main as tracks_main
    from engines.eval.tracks import smoothed_probabilities

    out = tmp_path / "tracks.json"
    rc = tracks_main(["--model", str(recipe["manifest"]), "--data",
                      str(recipe["data"] / "FER2013Valid"), "--sizes", "24",
                      "--bitrate-kbps", "2000", "--crops", "3", "--limit", "16",
                      "--clip", str(recipe["clip"]), "--json", str(out), "--threads", "1"])
    assert rc == 0
    res = json.loads(out.read_text())
    methods = [r["method"] for r in res["rows"]]
    assert methods == ["single", "best_confidence", "best_sharpness", "smoother",
                       "mean_probability", "mean_log_probability", "mean_probability_2",
                       "fused_crop"]
    assert all(r["condition"] == "h264_2000kbps_24px" and r["n"] == 16 for r in res["rows"])
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in res["rows"])
    # the smoother with equal spacing and no decay is the plain mean of the crops
    probs = np.random.default_rng(0).dirichlet(np.ones(8), size=(4, 3)).astype(np.float32)
    names = tuple(f"c{i}" for i in range(8))
    flat = smoothed_probabilities(probs, names, interval_s=0.0)
    assert np.allclose(flat, probs.mean(axis=1), atol=1e-5)
    # fusing aligned crops is their pixel mean
    from engines.eval.tracks import fuse_crops

    a, b = np.full((2, 4, 4), 10, np.uint8), np.full((2, 4, 4), 21, np.uint8)
    fused = fuse_crops([list(a), list(b)])
    assert len(fused) == 2 and all((f == 16).all() for f in fused)
