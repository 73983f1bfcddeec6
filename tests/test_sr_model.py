"""SR training on tiny data, ONNX export with parity, manifest, runtime use and evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="SR training needs torch")
pytest.importorskip("onnxruntime", reason="export parity needs onnxruntime")

from engines.build.sr import build_sr  # noqa: E402
from engines.manifest import load_manifest  # noqa: E402
from engines.runtime import create_engine_from_manifest  # noqa: E402
from engines.sr_io import super_resolve  # noqa: E402
from engines.train.sr import train  # noqa: E402
from engines.train.sr_config import SrTrainConfig  # noqa: E402
from engines.train.sr_data import PairParams, make_pair, to_unit_tensor_layout  # noqa: E402
from pipeline.config import EnhanceConfig  # noqa: E402
from pipeline.enhance import Enhancer  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
EMOTION = REPO / "engines" / "weights" / "emotion_resnet.json"


def _faces(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    """Smooth random 'faces' with some edges: blobs plus a dark bar (eyes) and a light one."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        small = (rng.random((5, 5)) * 200 + 30).astype(np.float32)
        img = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
        y = int(rng.integers(size // 4, size // 2))
        img[y:y + max(2, size // 12), size // 5:4 * size // 5] *= 0.3
        out.append(np.clip(img, 0, 255).astype(np.uint8))
    return out


def _tiny_config(tmp: Path, steps: int) -> SrTrainConfig:
    img_dir = tmp / "faces"
    img_dir.mkdir(parents=True, exist_ok=True)
    for i, face in enumerate(_faces(24, 48)):
        cv2.imwrite(str(img_dir / f"f{i:03d}.png"), face)
    return SrTrainConfig.model_validate({
        "seed": 3, "device": "cpu", "threads": 1, "log_every": 10, "eval_every": 1000,
        "checkpoint_every": 1000,
        "data": {"ferplus_dirs": [], "image_dirs": [str(img_dir)], "hr_sizes": [32],
                 "val_dir": None, "cache_dir": None},
        "model": {"base_width": 8, "encoder_widths": [8], "bottleneck_blocks": 1,
                  "up_widths": [8, 8], "d_base_width": 8, "d_layers": 2},
        "loss": {"perceptual": 0.05, "adversarial": 0.01, "adv_start_step": 10,
                 "feature_stages": 1, "emotion_manifest": str(EMOTION)},
        "optim": {"steps": steps, "batch_size": 8, "lr_g": 2e-3, "lr_d": 1e-3},
    })


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[SrTrainConfig, Path]:
    if not EMOTION.is_file():
        pytest.skip(f"{EMOTION} (perceptual-loss feature network) not found")
    tmp = tmp_path_factory.mktemp("sr_train")
    cfg = _tiny_config(tmp, steps=40)
    summary = train(cfg, tmp / "run")
    assert summary["steps"] == 40
    return cfg, tmp / "run" / "last.pt"


@pytest.fixture(scope="module")
def built(trained: tuple[SrTrainConfig, Path], tmp_path_factory: pytest.TempPathFactory):
    _, ckpt_path = trained
    out = tmp_path_factory.mktemp("sr_build")
    return build_sr(ckpt_path, out / "sr_tiny", input_size=16, command="test")


def _fixed_pairs(cfg: SrTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(123)
    pairs = [make_pair(f, 32, PairParams(augmentations=()), rng) for f in _faces(16, 48, 9)]
    lr = to_unit_tensor_layout(np.stack([p[0] for p in pairs]), cfg.model.mean, cfg.model.std)
    hr = to_unit_tensor_layout(np.stack([p[1] for p in pairs]), cfg.model.mean, cfg.model.std)
    return torch.from_numpy(lr), torch.from_numpy(hr)


def test_few_training_steps_reduce_l1(trained: tuple[SrTrainConfig, Path]) -> None:
    from engines.models.generator import build_generator
    from engines.train.sr import generator_config

    cfg, ckpt_path = trained
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    assert ckpt["step"] == 40 and ckpt["input_spec"]["scale_factor"] == 4
    lr, hr = _fixed_pairs(cfg)
    start = build_generator(generator_config(cfg)).eval()  # step 0 = bicubic
    after = build_generator(ckpt["architecture"]).eval()
    after.load_state_dict(ckpt["generator"])
    with torch.no_grad():
        l1_start = float(torch.nn.functional.l1_loss(start(lr), hr))
        l1_after = float(torch.nn.functional.l1_loss(after(lr), hr))
    assert l1_after < l1_start * 0.97, (l1_start, l1_after)
    run = json.loads((ckpt_path.parent / "run.json").read_text())
    assert run["seed"] == 3 and run["feature_net"] == "emotion_resnet"


def test_resume_continues_the_same_sequence(tmp_path: Path) -> None:
    if not EMOTION.is_file():
        pytest.skip(f"{EMOTION} not found")
    cfg = _tiny_config(tmp_path, steps=4)
    train(cfg, tmp_path / "straight")
    short = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"steps": 2})})
    train(short, tmp_path / "resumed")
    train(cfg, tmp_path / "resumed", resume=True)
    a = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["generator"]
    b = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["generator"]
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_export_parity_manifest_and_pipeline_use(built) -> None:
    m = built
    assert m.task == "sr" and m.scale_factor == 4 and m.color == "gray" and m.channels == 1
    assert m.input_size_hw == (16, 16) and m.output_name == "sr"
    assert m.metrics["parity_max_abs_diff_unit"] <= 2e-3
    assert m.architecture["kind"] == "stargan_v2_sr" and m.weights_file == "sr_tiny.pt"
    assert m.training["exported"] == "EMA generator" and m.training["seed"] == 3
    size_mb = (m.onnx_path.stat().st_size + m.weights_path.stat().st_size) / 1e6
    assert size_mb < 25
    # the manifest round-trips through the loader with its checks
    assert load_manifest(m.manifest_path, expect_task="sr", expect_input_size_hw=(16, 16))

    engine = create_engine_from_manifest(m, "onnxruntime", "cpu", 1)
    crops = [cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) for f in _faces(3, 20, 4)]
    out = super_resolve(engine, crops)
    assert [o.shape for o in out] == [(64, 64, 3)] * 3

    enhancer = Enhancer(EnhanceConfig(method="sr", sr_model=m.manifest_path,
                                      sr_size_band_px=(12.0, 32.0)), size_px=48)
    enhancer.start()
    try:
        res = enhancer.process([*crops, crops[0][:6, :6]], [20.0, 20.0, 20.0, 6.0])
    finally:
        enhancer.stop()
    assert [r.sr_applied for r in res] == [True, True, True, False]
    assert all(r.image_bgr.shape == (48, 48, 3) for r in res)


def test_evaluation_json_shape(built, tmp_path: Path) -> None:
    from engines.eval.sr import main as eval_main

    m = built
    data = tmp_path / "hr_faces"
    data.mkdir()
    for i, face in enumerate(_faces(4, 90, 7)):
        cv2.imwrite(str(data / f"p{i}.jpg"), cv2.cvtColor(face, cv2.COLOR_GRAY2BGR))
    out = tmp_path / "eval" / "sr.json"
    assert eval_main(["--model", str(m.manifest_path), "--data", str(data), "--scale", "4",
                      "--hr-size", "32,64", "--json", str(out), "--emotion-model",
                      str(EMOTION), "--threads", "1"]) == 0
    res = json.loads(out.read_text())
    assert len(res["rows"]) == 4
    for row in res["rows"]:
        assert {"method", "scale", "hr_size", "psnr", "ssim", "n", "fd_emotion_resnet"} <= set(row)
        assert row["method"] in ("bicubic", "sr") and row["scale"] == 4 and row["n"] == 4
        assert 10 < row["psnr"] < 80 and 0 < row["ssim"] <= 1
        assert Path(row["side_by_side_png"]).is_file()
    pic = cv2.imread(res["rows"][0]["side_by_side_png"])
    assert pic.shape[1] == 4 * 128  # LR | bicubic | SR | HR, small faces shown at 128 px
