"""A few training steps on tiny synthetic FER+ data: loss falls, checkpoints resume."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from engines.train.config import TrainConfig, load_train_config
from engines.train.emotion import train
from engines.train.ferplus import write_ferplus_folder
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def make_synthetic_ferplus(root: Path, n_train: int = 96, n_val: int = 32,
                           classes: int = 4) -> Path:
    """Two FER+ splits whose class is the face brightness (learnable in a few steps)."""
    rng = np.random.default_rng(0)
    for split, n in (("Train", n_train), ("Valid", n_val)):
        labels = np.arange(n) % classes
        base = 40 + labels * (170 // (classes - 1))
        images = np.clip(base[:, None, None] + rng.normal(0, 12, (n, 48, 48)), 0, 255)
        votes = np.zeros((n, 10), dtype=np.int64)
        votes[np.arange(n), labels] = 8
        votes[np.arange(n), (labels + 1) % classes] = 2
        write_ferplus_folder(root / f"FER2013{split}", images.astype(np.uint8), votes)
    return root


def tiny_config(data_root: Path, out_dir: Path, epochs: int = 3) -> TrainConfig:
    return TrainConfig.model_validate({
        "seed": 3, "device": "cpu", "threads": 2, "out_dir": str(out_dir), "log_every": 100,
        "data": {"root": str(data_root), "cache_dir": None},
        "model": {"stem_width": 8, "widths": [8, 16], "blocks": [1, 1], "dropout": 0.0},
        "augment": {"rotate_deg": 5.0, "brightness": 0.0, "contrast": 0.0, "erase_prob": 0.0,
                    "degrade": {"prob": 0.5}},
        "optim": {"lr": 0.01, "weight_decay": 0.0, "epochs": epochs, "batch_size": 16,
                  "warmup_epochs": 0.0, "final_lr_frac": 0.5},
        "eval": {"sizes": [48, 16]},
    })


def test_loss_falls_and_checkpoint_loads_without_code(tmp_path: Path) -> None:
    data = make_synthetic_ferplus(tmp_path / "data")
    cfg = tiny_config(data, tmp_path / "runs")
    summary = train(cfg, tmp_path / "runs" / "tiny")
    lines = [json.loads(s) for s in (tmp_path / "runs/tiny/metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2, 3]
    assert lines[-1]["train_loss"] < lines[0]["train_loss"] * 0.9
    assert summary["best"]["acc_48"] > 0.5  # 4 classes, chance is 0.25
    ckpt = torch.load(tmp_path / "runs/tiny/best.pt", weights_only=True)
    assert ckpt["class_names"][:2] == ["neutral", "happiness"]
    assert ckpt["architecture"]["widths"] == [8, 16]
    resolved = json.loads((tmp_path / "runs/tiny/config.resolved.json").read_text())
    assert resolved["seed"] == 3


def test_resume_continues_from_last_epoch(tmp_path: Path) -> None:
    data = make_synthetic_ferplus(tmp_path / "data", n_train=32, n_val=16)
    run = tmp_path / "run"
    train(tiny_config(data, tmp_path, epochs=1), run)
    summary = train(tiny_config(data, tmp_path, epochs=2), run, resume=True)
    epochs = [json.loads(s)["epoch"] for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2]
    assert summary["last"]["epoch"] == 2
    # A second schedule starting from those weights (fine-tuning) refuses a different network.
    other = tiny_config(data, tmp_path, epochs=1).model_dump()
    other["init_from"] = str(run / "best.pt")
    other["model"]["widths"] = [8, 32]
    with pytest.raises(ValueError, match="init_from: expected architecture"):
        train(TrainConfig.model_validate(other), tmp_path / "ft")


def test_config_rejects_unknown_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("optim:\n  epochs: 2\n  learning_rate: 0.1\n")
    with pytest.raises(ConfigError, match=r"optim.learning_rate"):
        load_train_config(cfg)
    shipped = load_train_config(REPO / "configs/train/emotion.yaml")
    assert shipped.model.input_size == 48


def test_channels_last_training_for_wide_nets_only(tmp_path: Path) -> None:
    """>= 16 channels everywhere trains in NHWC (faster); narrower nets stay NCHW (a torch CPU
    crash in strided 1x1 backward below 16 channels). Both paths train and checkpoint."""
    from engines.models.resnet import ResNetConfig
    from engines.train.emotion import training_memory_format

    assert training_memory_format(ResNetConfig(stem_width=16, widths=(16, 32))) \
        == torch.channels_last
    assert training_memory_format(ResNetConfig(stem_width=8, widths=(16, 32))) \
        == torch.contiguous_format
    data = make_synthetic_ferplus(tmp_path / "data", n_train=32, n_val=16)
    cfg = tiny_config(data, tmp_path, epochs=1).model_dump()
    cfg["model"].update({"stem_width": 16, "widths": [16, 16]})
    summary = train(TrainConfig.model_validate(cfg), tmp_path / "wide")
    assert summary["last"]["epoch"] == 1
    ckpt = torch.load(tmp_path / "wide/best.pt", weights_only=True)
    assert ckpt["architecture"]["widths"] == [16, 16]


@pytest.mark.parametrize("channels", [16, 32])
def test_nhwc_strided_convolution_gradients_are_exact(channels: int) -> None:
    """The NHWC training path's strided convolutions (ResNet shortcuts and first convs) give
    float64-exact gradients at the widths it is enabled for (oneDNN's 1x1 stride-2 NHWC
    backward is known to go wrong below its channel block, hence the >= 16 guard)."""
    gen = torch.Generator().manual_seed(0)
    for k in (1, 3):
        w = torch.randn(channels, channels, k, k, generator=gen, dtype=torch.float64)
        x = torch.randn(8, channels, 24, 24, generator=gen, dtype=torch.float64)
        g = torch.randn(8, channels, 12, 12, generator=gen, dtype=torch.float64)
        grads = []
        for dtype, fmt in ((torch.float64, torch.contiguous_format),
                           (torch.float32, torch.channels_last)):
            xi = x.to(dtype).contiguous(memory_format=fmt).detach().requires_grad_()
            wi = w.to(dtype).contiguous(memory_format=fmt).detach().requires_grad_()
            y = torch.nn.functional.conv2d(xi, wi, stride=2, padding=k // 2)
            y.backward(g.to(dtype).contiguous(memory_format=fmt))
            grads.append((xi.grad.double(), wi.grad.double()))
        for got, ref in zip(grads[1], grads[0], strict=True):
            assert float((got - ref).abs().max() / ref.abs().max()) < 1e-5
