"""Train the FER+ emotion ResNet.

    python -m engines.train.emotion --config configs/train/emotion.yaml [--resume] [--out DIR]

Seeded (each epoch draws its augmentation and shuffling from ``(seed, epoch)``, so a resumed
run repeats the same epochs), resumable from ``last.pt``, CPU or CUDA. Each run directory
holds ``config.resolved.json``, ``metrics.jsonl`` (one line per epoch), ``last.pt``,
``best.pt`` (best mean FER2013Valid accuracy over ``eval.sizes``) and ``run.json``.
Checkpoints contain only tensors and plain values, so ``torch.load(weights_only=True)`` works.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from engines.eval.metrics import softmax
from engines.models.resnet import ResNet, ResNetConfig, build_resnet
from engines.preprocess import InputSpec, faces_to_input
from engines.train.augment import random_affine, random_erase, random_photometric
from engines.train.config import TrainConfig, load_train_config
from engines.train.degradations import DegradationParams, degrade_to_size, random_degrade
from engines.train.emotion_mix import build_mix, epoch_samples, sample_images
from engines.train.ferplus import FaceDataset, default_shared_dir, load_dataset_cached

log = logging.getLogger("engines.train.emotion")


def input_spec(cfg: TrainConfig) -> InputSpec:
    m = cfg.model
    return InputSpec((m.input_size, m.input_size), m.color, tuple(m.mean), tuple(m.std))


def resnet_config(cfg: TrainConfig, num_classes: int) -> ResNetConfig:
    m = cfg.model
    return ResNetConfig(in_channels=1 if m.color == "gray" else 3, num_classes=num_classes,
                        stem_width=m.stem_width, widths=tuple(m.widths), blocks=tuple(m.blocks),
                        stem_stride=m.stem_stride, first_stage_stride=m.first_stage_stride,
                        dropout=m.dropout)


def data_root(cfg: TrainConfig) -> Path:
    return cfg.data.root if cfg.data.root is not None else default_shared_dir() / "data/ferplus"


def load_splits(cfg: TrainConfig) -> tuple[FaceDataset, FaceDataset]:
    root = data_root(cfg)
    size = cfg.model.input_size
    train = load_dataset_cached(root / cfg.data.train_dir, cfg.data.cache_dir, cfg.data.layout,
                                size)
    val = load_dataset_cached(root / cfg.data.val_dir, cfg.data.cache_dir, cfg.data.layout, size)
    if cfg.data.max_train_samples and len(train) > cfg.data.max_train_samples:
        train = train.subset(np.arange(cfg.data.max_train_samples))
    if cfg.data.max_val_samples and len(val) > cfg.data.max_val_samples:
        val = val.subset(np.arange(cfg.data.max_val_samples))
    return train, val


def degradation_params(cfg: TrainConfig) -> DegradationParams:
    d = cfg.augment.degrade
    return DegradationParams(min_size_px=d.min_size_px, max_size_px=d.max_size_px,
                             blur_prob=d.blur_prob, noise_prob=d.noise_prob,
                             jpeg_prob=d.jpeg_prob, restore_methods=tuple(d.restore_methods))


def make_batch(images: list[np.ndarray], simulated: np.ndarray, cfg: TrainConfig,
               spec: InputSpec, rng: np.random.Generator,
               params: DegradationParams) -> np.ndarray:
    """Augment (affine, flip, photometric, CCTV degradation) then the shared preprocessing.

    Images already through the camera simulator (``simulated``) skip the cheap degradation.
    """
    a = cfg.augment
    out = []
    for img, is_sim in zip(images, simulated, strict=True):
        img = random_affine(img, rng, a.rotate_deg, a.scale_range, a.shift_frac)
        if a.hflip and rng.random() < 0.5:
            img = img[:, ::-1]
        img = random_photometric(img, rng, a.brightness, a.contrast)
        if not is_sim and rng.random() < a.degrade.prob:
            img = random_degrade(np.ascontiguousarray(img), rng, params)
        out.append(np.ascontiguousarray(img))
    batch = faces_to_input(out, spec)
    random_erase(batch, rng, a.erase_prob)
    return batch


def mixup(x: np.ndarray, target: np.ndarray, rng: np.random.Generator, alpha: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """Mixup (Zhang et al. 2018): convex blend of the batch with a shuffled copy."""
    lam = float(rng.beta(alpha, alpha))
    perm = rng.permutation(len(x))
    return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]


def training_memory_format(arch: ResNetConfig) -> torch.memory_format:
    """NHWC (channels-last) when every layer is at least 16 channels wide, else NCHW.

    NHWC trains these small convolutions 1.4-1.6x faster on CPU (measured on the 2-core dev
    machine) and suits CUDA tensor cores. torch 2.13's CPU backward of a strided 1x1
    convolution with fewer than 16 channels in NHWC crashes the process (seen at 4, 8, 12 and
    15 channels), so narrower (test-sized) networks stay NCHW.
    """
    narrowest = min(arch.stem_width, *arch.widths)
    return torch.channels_last if narrowest >= 16 else torch.contiguous_format


def lr_at(step: int, total: int, warmup: int, base: float, final_frac: float) -> float:
    """Linear warm-up then cosine decay to ``final_frac * base``."""
    if warmup > 0 and step < warmup:
        return base * (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return base * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


@torch.no_grad()
def predict_logits(model: ResNet, batch_nchw: np.ndarray, device: torch.device,
                   batch_size: int = 256) -> np.ndarray:
    model.eval()
    outs = []
    for i in range(0, len(batch_nchw), batch_size):
        x = torch.from_numpy(batch_nchw[i:i + batch_size]).to(device)
        x = x.contiguous(memory_format=training_memory_format(model.cfg))
        outs.append(model(x).float().cpu().numpy())
    return np.concatenate(outs) if outs else np.zeros((0, model.cfg.num_classes), np.float32)


def evaluate(model: ResNet, val: FaceDataset, sizes: tuple[int, ...], restore: str,
             spec: InputSpec, device: torch.device, batch_size: int,
             cctv_inputs: dict[str, np.ndarray] | None = None) -> dict[str, float]:
    """Majority-vote accuracy on the validation split at each face size (and camera point).

    Only the emotion outputs are compared: a ``not_face`` output, if any, is ignored here.
    """
    res = {}
    n_emotions = len(val.class_names)
    inputs = {f"acc_{size}": faces_to_input(
        [degrade_to_size(img, size, restore) for img in val.images], spec) for size in sizes}
    inputs.update({f"acc_{k}": v for k, v in (cctv_inputs or {}).items()})
    for key, x in inputs.items():
        logits = predict_logits(model, x, device, batch_size)[:, :n_emotions]
        res[key] = float((softmax(logits).argmax(1) == val.labels).mean())
    res["acc_mean"] = float(np.mean([res[k] for k in inputs]))
    return res


def cctv_eval_inputs(cfg: TrainConfig, val: FaceDataset, spec: InputSpec
                     ) -> dict[str, np.ndarray]:
    """Validation faces through the camera simulator (full frames, H.264) at each eval point,
    by the evaluation's own condition (:class:`engines.eval.conditions.Condition`)."""
    from engines.eval.conditions import Condition, restored_faces
    from engines.train.emotion_mix import camera_clip

    out = {}
    for point in cfg.eval.cctv:
        faces = restored_faces(Condition("cctv", point.size_px, point.bitrate_kbps), val.images,
                               spec.input_size_hw, cfg.eval.restore,
                               camera_clip(cfg.augment.camera), seed=cfg.seed + 7)
        out[f"cctv{point.size_px}_{int(point.bitrate_kbps)}k"] = faces_to_input(faces, spec)
    return out


def load_init_weights(model: ResNet, path: Path, device: torch.device) -> None:
    """Start from a training checkpoint or a shipped manifest (``.json`` + its ``.pt``).

    A head with fewer classes fills the first rows, so a model can gain an output
    (``not_face``) while keeping what it learnt for emotions. Raises ValueError when the
    rest of the architecture differs.
    """
    if Path(path).suffix == ".json":
        from engines.manifest import load_manifest, verify_weights_file

        manifest = load_manifest(path, expect_task="emotion")
        arch = ResNetConfig.from_dict(manifest.architecture)
        state = dict(torch.load(verify_weights_file(manifest), map_location=device,
                                weights_only=True))
    else:
        init = torch.load(path, map_location=device, weights_only=True)
        arch = ResNetConfig.from_dict(init.get("architecture") or {})
        state = dict(init["model"])
    # weights fit when the layers match: head size, dropout and mirror averaging may differ
    neutral = {"num_classes": model.cfg.num_classes, "tta_hflip": False, "dropout": 0.0}
    if replace(arch, **neutral) != replace(model.cfg, **neutral):
        raise ValueError(f"init_from: expected architecture {model.cfg.to_dict()}, "
                         f"got {arch.to_dict()}")
    if arch.num_classes < model.cfg.num_classes:
        own = model.state_dict()
        for key in ("fc.weight", "fc.bias"):
            grown = own[key].clone()
            grown[:arch.num_classes] = state[key]
            state[key] = grown
    model.load_state_dict(state)
    log.info("initialised weights from %s (%d -> %d classes)", path, arch.num_classes,
             model.cfg.num_classes)


def _checkpoint(model: ResNet, opt: torch.optim.Optimizer | None, cfg: TrainConfig,
                spec: InputSpec, class_names: tuple[str, ...], epoch: int,
                metrics: dict[str, Any], best: dict[str, Any]) -> dict[str, Any]:
    ckpt: dict[str, Any] = {
        "format": "cctv-emotion-ckpt-v1",
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "architecture": model.cfg.to_dict(),
        "input_spec": {"input_size_hw": list(spec.input_size_hw), "color": spec.color,
                       "mean": list(spec.mean), "std": list(spec.std)},
        "class_names": list(class_names),
        "config": json.loads(cfg.model_dump_json()),
        "epoch": epoch,
        "metrics": metrics,
        "best": best,
    }
    if opt is not None:
        ckpt["optimizer"] = opt.state_dict()
    return ckpt


def _save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device: expected a CUDA device, got none (torch.cuda.is_available())")
    return torch.device(name)


def machine_description() -> str:
    return f"{platform.machine()} {platform.processor() or ''} {_cpu_count()} cores".strip()


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def train(cfg: TrainConfig, out_dir: Path, resume: bool = False,
          command: str | None = None) -> dict[str, Any]:
    """Run the training described by ``cfg`` into ``out_dir``; return the run summary."""
    t_start = time.time()
    torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.resolved.json").write_text(cfg.model_dump_json(indent=2))

    train_ds, val_ds = load_splits(cfg)
    log.info("data: %d train, %d val images from %s", len(train_ds), len(val_ds), data_root(cfg))
    spec = input_spec(cfg)
    mix = build_mix(cfg, train_ds)
    class_names = mix.class_names
    cctv_inputs = cctv_eval_inputs(cfg, val_ds, spec)
    torch.manual_seed(cfg.seed)
    model = build_resnet(resnet_config(cfg, len(class_names))).to(device)
    memory_format = training_memory_format(model.cfg)
    model = model.to(memory_format=memory_format)
    if cfg.init_from is not None:
        load_init_weights(model, cfg.init_from, device)
    o = cfg.optim
    if o.optimizer == "adamw":
        opt: torch.optim.Optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr,
                                                       weight_decay=o.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, nesterov=True,
                              weight_decay=o.weight_decay)
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(o.ema_decay), use_buffers=True)
           if o.ema_decay > 0 else None)
    start_epoch, best = 0, {"acc_mean": -1.0}
    prior_wall = 0.0
    last_path = out_dir / "last.pt"
    if resume and last_path.is_file():
        ckpt = torch.load(last_path, map_location=device, weights_only=True)
        model.load_state_dict(ckpt.get("model_train", ckpt["model"]))
        opt.load_state_dict(ckpt["optimizer"])
        if ema is not None and "ema" in ckpt:
            ema.load_state_dict(ckpt["ema"])
        start_epoch, best = int(ckpt["epoch"]) + 1, dict(ckpt["best"])
        prior_wall = float(ckpt["metrics"].get("wall_s", 0.0))
        log.info("resumed from %s at epoch %d", last_path, start_epoch)

    n = len(epoch_samples(mix, np.random.default_rng(0)))
    steps_per_epoch = n // o.batch_size if n >= o.batch_size else 1
    if o.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, o.max_steps_per_epoch)
    total_steps = steps_per_epoch * o.epochs
    warmup = int(o.warmup_epochs * steps_per_epoch)
    params = degradation_params(cfg)
    metrics: dict[str, Any] = {}
    a = cfg.augment
    for epoch in range(start_epoch, o.epochs):
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 1000 + epoch)
        order = epoch_samples(mix, rng)
        model.train()
        t0, seen, loss_sum = time.time(), 0, 0.0
        for step in range(steps_per_epoch):
            idx = order[step * o.batch_size:(step + 1) * o.batch_size]
            images, soft, simulated = sample_images(mix, idx, rng)
            x_np = make_batch(images, simulated, cfg, spec, rng, params)
            if o.target == "majority":
                soft = np.eye(len(class_names), dtype=np.float32)[soft.argmax(1)]
            if a.mixup_prob > 0 and rng.random() < a.mixup_prob:
                x_np, soft = mixup(x_np, soft, rng, a.mixup_alpha)
            target = torch.from_numpy(np.ascontiguousarray(soft, dtype=np.float32))
            if o.label_smoothing > 0:
                target = target * (1 - o.label_smoothing) + o.label_smoothing / len(class_names)
            lr = lr_at(epoch * steps_per_epoch + step, total_steps, warmup, o.lr, o.final_lr_frac)
            for g in opt.param_groups:
                g["lr"] = lr
            x = torch.from_numpy(np.ascontiguousarray(x_np, dtype=np.float32))
            x = x.to(device).contiguous(memory_format=memory_format)
            target = target.to(device)
            loss = -(target * F.log_softmax(model(x), dim=1)).sum(dim=1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if ema is not None:
                ema.update_parameters(model)
            seen += len(idx)
            loss_sum += float(loss.detach()) * len(idx)
            if (step + 1) % cfg.log_every == 0 or step + 1 == steps_per_epoch:
                el = time.time() - t0
                eta = el / (step + 1) * (steps_per_epoch - step - 1)
                print(f"epoch {epoch + 1}/{o.epochs} step {step + 1}/{steps_per_epoch} "
                      f"loss {loss_sum / seen:.4f} lr {lr:.2e} {seen / el:.0f} img/s "
                      f"eta {eta:.0f}s", file=sys.stderr, flush=True)
        train_s = time.time() - t0
        served = ema.module if ema is not None else model
        ev = evaluate(served, val_ds, tuple(cfg.eval.sizes), cfg.eval.restore, spec, device,
                      cfg.eval.batch_size, cctv_inputs)
        metrics = {"epoch": epoch + 1, "train_loss": loss_sum / max(seen, 1),
                   "train_s": train_s, "eval_s": time.time() - t0 - train_s, **ev,
                   "wall_s": prior_wall + time.time() - t_start}
        is_best = ev["acc_mean"] > best["acc_mean"]
        if is_best:
            best = {**ev, "epoch": epoch + 1}
        print(f"epoch {epoch + 1} done: " + " ".join(
            f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items())
            + (" (best)" if is_best else ""), file=sys.stderr, flush=True)
        with open(out_dir / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(metrics) + "\n")
        ckpt = _checkpoint(served, opt, cfg, spec, class_names, epoch, metrics, best)
        if ema is not None:
            ckpt["model_train"] = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            ckpt["ema"] = ema.state_dict()
        _save(ckpt, last_path)
        if is_best:
            for key in ("optimizer", "model_train", "ema"):
                ckpt.pop(key, None)
            _save(ckpt, out_dir / "best.pt")

    summary = {"name": cfg.name, "seed": cfg.seed, "command": command,
               "machine": machine_description(), "device": str(device),
               "torch": torch.__version__, "epochs": o.epochs,
               "wall_s": prior_wall + time.time() - t_start, "best": best, "last": metrics,
               "train_images": len(train_ds), "val_images": len(val_ds),
               "data": str(data_root(cfg))}
    (out_dir / "run.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None, help="run dir (default out_dir/name)")
    p.add_argument("--resume", action="store_true", help="continue from last.pt in the run dir")
    p.add_argument("--epochs", type=int, default=None, help="override optim.epochs")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load_train_config(args.config)
    if args.epochs is not None:
        cfg = cfg.model_copy(update={"optim": cfg.optim.model_copy(update={"epochs": args.epochs})})
        cfg = TrainConfig.model_validate(json.loads(cfg.model_dump_json()))
    out = args.out or cfg.out_dir / cfg.name
    command = "python -m engines.train.emotion " + " ".join(shlex.quote(a) for a in (
        argv if argv is not None else sys.argv[1:]))
    summary = train(cfg, out, resume=args.resume, command=command)
    print(json.dumps(summary["best"]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
