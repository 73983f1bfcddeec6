"""Camera-domain SR (issue 10): pairs through the real simulator and codec, a few training
steps that lower the error, and the SR-vs-bilinear product measure end to end."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.cctv_sim import SimRanges
from engines.train.sr_camera import CameraPairBank, CameraPairs, build_camera_pairs
from tests.test_cctv_sim import street_clip, synthetic_faces  # noqa: F401 - fixture

EMOTION = Path("engines/weights/emotion_resnet.json")
RANGES = SimRanges(min_size_px=40, max_size_px=48, bitrate_kbps=(3000.0, 3000.0),
                   noise_sigma=(1.0, 1.0), blur_sigma=(0.3, 0.3), hevc_prob=0.0,
                   jpeg_prob=0.0, crop_hw=None, chunk=32)


def test_camera_pairs_are_aligned_and_x4(street_clip: Path) -> None:  # noqa: F811
    faces = synthetic_faces(24)
    pairs = build_camera_pairs(faces, RANGES, (48, 40), 4, street_clip, seed=1, workers=1)
    assert len(pairs) == 24  # every simulated face is >= 40 px
    for size, hr in pairs.hr.items():
        lr = pairs.lr[size]
        assert hr.shape[1:] == (size, size) and lr.shape[1:] == (size // 4, size // 4)
        assert len(lr) == len(hr) and lr.dtype == np.uint8
        # each input is its own ground truth degraded further, not another face's
        down = np.stack([cv2.resize(h, lr.shape[1:][::-1], interpolation=cv2.INTER_AREA)
                         for h in hr]).astype(np.float32)
        own = np.abs(down - lr).mean()
        other = np.abs(down - np.roll(lr, 1, axis=0)).mean() if len(lr) > 1 else np.inf
        assert own < 12.0 and own < other
    with pytest.raises(ValueError, match="multiples of scale 4"):
        build_camera_pairs(faces, RANGES, (42,), 4, street_clip, seed=1, workers=1)


def test_pair_bank_augments_input_and_ground_truth_alike() -> None:
    rng = np.random.default_rng(0)
    lr = rng.integers(0, 255, (10, 8, 8), dtype=np.uint8)
    hr = np.stack([np.kron(x, np.ones((4, 4), np.uint8)) for x in lr])
    bank = CameraPairBank(CameraPairs({32: lr}, {32: hr}))
    seen = set()
    for step in range(6):
        b_lr, b_hr, size, augs = bank.sample_batch(16, None, np.random.default_rng(step))
        assert size == 32 and b_lr.shape == (16, 8, 8) and b_hr.shape == (16, 32, 32)
        for x, y in zip(b_lr, b_hr, strict=True):
            np.testing.assert_array_equal(np.kron(x, np.ones((4, 4), np.uint8)), y)
        seen.update(augs)
    assert seen == {"none", "hflip", "rot90", "rot180", "rot270"}


@pytest.fixture(scope="module")
def camera_run(tmp_path_factory: pytest.TempPathFactory, street_clip: Path  # noqa: F811
               ) -> tuple[Path, Path]:
    if not EMOTION.is_file():
        pytest.skip(f"{EMOTION} (perceptual-loss feature network) not found")
    from engines.train.ferplus import write_ferplus_folder
    from engines.train.sr import train
    from engines.train.sr_config import SrTrainConfig

    tmp = tmp_path_factory.mktemp("sr_camera")
    for split, n, seed in (("Train", 64, 0), ("Valid", 32, 1)):
        votes = np.zeros((n, 10), np.int64)
        votes[np.arange(n), np.arange(n) % 4] = 10
        write_ferplus_folder(tmp / f"data/FER2013{split}", synthetic_faces(n, seed), votes)
    cam = {"enabled": True, "clip": str(street_clip), "min_size_px": 40, "max_size_px": 48,
           "bitrate_kbps": [3000, 3000], "noise_sigma": [1.0, 1.0], "hevc_prob": 0.0,
           "jpeg_prob": 0.0, "crop_hw": None, "workers": 1}
    cfg = SrTrainConfig.model_validate({
        "seed": 3, "device": "cpu", "threads": 1, "log_every": 10, "eval_every": 10,
        "checkpoint_every": 1000,
        "data": {"root": str(tmp / "data"), "hr_sizes": [48, 40], "val_images": 32,
                 "cache_dir": None, "camera": cam},
        "model": {"base_width": 8, "encoder_widths": [8], "bottleneck_blocks": 1,
                  "up_widths": [8, 8], "d_base_width": 8, "d_layers": 2},
        "loss": {"perceptual": 0.05, "adversarial": 0.0, "feature_stages": 1,
                 "emotion_manifest": str(EMOTION)},
        "optim": {"steps": 40, "batch_size": 8, "lr_g": 2e-3},
    })
    summary = train(cfg, tmp / "run")
    assert summary["steps"] == 40
    assert set(summary["data"]["camera_pairs"]) <= {"hr_40px", "hr_48px"}
    return tmp / "data", tmp / "run"


def test_camera_training_lowers_validation_error(camera_run: tuple[Path, Path]) -> None:
    _, run = camera_run
    evals = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [10, 20, 30, 40]
    assert evals[-1]["val_l1_sr"] < evals[0]["val_l1_sr"]


def test_sr_cctv_emotion_arms_json(camera_run: tuple[Path, Path], street_clip: Path,  # noqa: F811
                                   tmp_path: Path) -> None:
    from engines.eval.sr_cctv_emotion import main as arms_main
    from tests.helpers.tiny_sr import build_sr_onnx, write_sr_manifest

    data, run = camera_run
    sr = write_sr_manifest(build_sr_onnx(tmp_path / "sr.onnx", channels=1), tmp_path / "sr.json")
    sr_cfg = tmp_path / "sr_cfg.yaml"
    sr_cfg.write_text(json.dumps({
        "data": {"root": str(data), "hr_sizes": [48, 40], "cache_dir": None,
                 "camera": {"enabled": True, "clip": str(street_clip), "min_size_px": 40,
                            "workers": 1, "crop_hw": None}}}))
    out = tmp_path / "arms.json"
    rc = arms_main(["--arm", "bilinear", "--arm", f"nn={sr}", "--arm", f"joint={run}/last.pt",
                    "--data", str(data), "--clip", str(street_clip), "--sizes", "16",
                    "--train-images", "64", "--epochs", "1", "--batch-size", "16",
                    "--sr-config", str(sr_cfg), "--cache-dir", str(tmp_path / "cache"),
                    "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert {(r["arm"], r["classifier"]) for r in res["rows"]} == {
        (a, c) for a in ("bilinear", "nn", "joint") for c in ("shipped", "fine-tuned")}
    assert all(r["n"] == 32 and 0 <= r["accuracy"] <= 1 for r in res["rows"])
    assert {(c["arm"], c["classifier"]) for c in res["minus_bilinear"]} == {
        (a, c) for a in ("nn", "joint") for c in ("shipped", "fine-tuned")}
    assert res["steps"] == 4
    assert (tmp_path / "joint_weights.pt").is_file()
