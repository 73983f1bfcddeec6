"""Self-supervised face SR training (Jo & Park): trained only on low-resolution faces.

    python -m engines.train.sr --config configs/train/sr.yaml [--resume] [--out DIR]
    python -m engines.train.sr --config configs/train/sr.yaml --footage /recordings/cam3 \
        --init engines/weights/sr_generator.json --steps 1500 --out runs/sr/cam3

Each face is its own ground truth: it is downscaled x``scale`` (antialiased bicubic) to make
the input, at every ground-truth size it can give (``data.hr_sizes``), with one random
augmentation per sample (see :mod:`engines.train.sr_data`). Losses: L1 + LSGAN adversarial
(multi-scale patch discriminator, from ``loss.adv_start_step``) + perceptual L1 on a frozen
feature network (the emotion ResNet by default, VGG-19 by path). The EMA generator is what
gets exported.

Data: FER+ folders, folders of face images of any size, and ``--footage`` (video files or
folders), whose faces are harvested with the pipeline's own detector and tracker
(:mod:`engines.train.harvest`): per-camera adaptation with no high-resolution data. With
``--footage`` the FER+ data is dropped unless ``--keep-base-data`` is given. With
``data.camera.enabled`` the pairs are camera-domain (:mod:`engines.train.sr_camera`): FER+
faces through the camera simulator are the ground truth, and through it again at 1/scale the
input; validation pairs are made the same way from the validation faces.

Seeded (step ``k`` draws its batch from ``(seed, k)``, so a resumed run continues the same
sequence), resumable from ``last.pt``; the run directory holds ``config.resolved.json``,
``metrics.jsonl``, ``last.pt`` and ``run.json``. Checkpoints hold only tensors and plain
values (``torch.load(weights_only=True)``).
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from engines.manifest import sha256_file
from engines.models.discriminator import DiscriminatorConfig, MultiScaleDiscriminator
from engines.models.generator import Generator, GeneratorConfig, build_generator
from engines.train.emotion import machine_description, pick_device
from engines.train.emotion_mix import camera_clip, sim_ranges
from engines.train.ferplus import default_shared_dir, load_dataset_cached
from engines.train.sr_camera import CameraPairBank, CameraPairs, build_camera_pairs
from engines.train.sr_config import SrTrainConfig, load_sr_config
from engines.train.sr_data import (
    FaceBank,
    PairParams,
    from_unit_tensor_layout,
    load_image_dir,
    resize_bicubic_aa,
    to_unit_tensor_layout,
)
from engines.train.sr_losses import (
    build_feature_net,
    lsgan_d_loss,
    lsgan_g_loss,
    perceptual_l1,
)

log = logging.getLogger("engines.train.sr")
CKPT_FORMAT = "cctv-sr-ckpt-v1"


def generator_config(cfg: SrTrainConfig) -> GeneratorConfig:
    m = cfg.model
    return GeneratorConfig(in_channels=1 if m.color == "gray" else 3, scale=cfg.pairs.scale,
                           base_width=m.base_width, encoder_widths=tuple(m.encoder_widths),
                           bottleneck_blocks=m.bottleneck_blocks, up_widths=tuple(m.up_widths),
                           norm=m.norm, upsample=m.upsample, global_skip=m.global_skip)


def pair_params(cfg: SrTrainConfig) -> PairParams:
    p = cfg.pairs
    return PairParams(scale=p.scale, augmentations=tuple(p.augmentations),
                      noise_sigma=tuple(p.noise_sigma), blur_sigma=tuple(p.blur_sigma),
                      jpeg_quality=tuple(p.jpeg_quality))


def ferplus_root(cfg: SrTrainConfig) -> Path:
    return cfg.data.root if cfg.data.root is not None else default_shared_dir() / "data/ferplus"


def _ferplus_faces(folder: Path, cfg: SrTrainConfig) -> list[np.ndarray]:
    ds = load_dataset_cached(folder, cfg.data.cache_dir, "auto", 48)
    if cfg.model.color == "gray":
        return list(ds.images)
    return [cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) for img in ds.images]


def load_training_faces(cfg: SrTrainConfig) -> tuple[list[np.ndarray], dict[str, Any]]:
    """FER+ faces, image folders and harvested footage faces, with a summary of sources."""
    faces: list[np.ndarray] = []
    summary: dict[str, Any] = {}
    for name in cfg.data.ferplus_dirs:
        got = _ferplus_faces(ferplus_root(cfg) / name, cfg)
        summary[str(ferplus_root(cfg) / name)] = len(got)
        faces += got
    for folder in cfg.data.image_dirs:
        got = load_image_dir(folder, cfg.model.color)
        summary[str(folder)] = len(got)
        faces += got
    if cfg.data.footage:
        from engines.train.harvest import harvest_footage

        for source in cfg.data.footage:
            for result in harvest_footage(source, cfg.data.harvest_dir, cfg.data.harvest):
                got = load_image_dir(result.out_dir, cfg.model.color)
                summary[str(result.out_dir)] = {"harvested_crops": len(got),
                                                "source": str(source), "tracks": result.tracks,
                                                "frames": result.frames}
                faces += got
    if cfg.data.max_images and len(faces) > cfg.data.max_images:
        rng = np.random.default_rng([cfg.seed, 99])
        keep = np.sort(rng.choice(len(faces), cfg.data.max_images, replace=False))
        faces = [faces[i] for i in keep]
    return faces, summary


def camera_pairs(cfg: SrTrainConfig, faces: list[np.ndarray], seed: int) -> CameraPairs:
    """Camera-domain pairs of gray FER+ faces (``data.camera``), cached by the simulator."""
    if cfg.model.color != "gray":
        raise ValueError("data.camera: expected model.color gray (the simulator is luminance "
                         f"only), got {cfg.model.color!r}")
    cam = cfg.data.camera
    return build_camera_pairs(np.stack(faces), sim_ranges(cam), cfg.data.hr_sizes,
                              cfg.pairs.scale, camera_clip(cam), seed, workers=cam.workers,
                              cache_dir=cfg.data.cache_dir)


def training_bank(cfg: SrTrainConfig) -> tuple[FaceBank | CameraPairBank, dict[str, Any]]:
    faces, data_summary = load_training_faces(cfg)
    if not cfg.data.camera.enabled:
        return FaceBank(faces, cfg.data.hr_sizes), data_summary
    if cfg.data.footage or cfg.data.image_dirs:
        raise ValueError("data.camera: expected FER+ faces only (equal-size images); "
                         "footage and image_dirs use the plain pairs")
    pairs = camera_pairs(cfg, faces, cfg.seed)
    data_summary["camera_pairs"] = pairs.summary()
    return CameraPairBank(pairs), data_summary


def validation_pairs(cfg: SrTrainConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """Fixed (lr, hr) pairs: FER+ validation faces at 48 px, downscaled x scale, no augment
    (camera mode: the best-populated ground-truth size of the camera-domain pairs)."""
    if cfg.data.val_dir is None:
        return None
    folder = ferplus_root(cfg) / cfg.data.val_dir
    if not folder.is_dir():
        log.warning("no validation folder %s; skipping validation", folder)
        return None
    faces = _ferplus_faces(folder, cfg)[:cfg.data.val_images]
    if cfg.data.camera.enabled:
        pairs = camera_pairs(cfg, faces, cfg.seed + 1000)
        size = max(pairs.hr, key=lambda s: len(pairs.hr[s]))  # the best-populated size
        return pairs.lr[size], pairs.hr[size]
    hr_size = 48
    lr_size = hr_size // cfg.pairs.scale
    hr = np.stack([resize_bicubic_aa(f, (hr_size, hr_size)) for f in faces])
    lr = np.stack([resize_bicubic_aa(f, (lr_size, lr_size)) for f in hr])
    return lr, hr


def psnr_u8(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(255.0 ** 2 / mse))


@torch.no_grad()
def run_generator(gen: Generator, lr_u8: np.ndarray, cfg: SrTrainConfig, device: torch.device,
                  batch_size: int = 128) -> np.ndarray:
    gen.eval()
    outs = []
    for i in range(0, len(lr_u8), batch_size):
        x = torch.from_numpy(to_unit_tensor_layout(lr_u8[i:i + batch_size], cfg.model.mean,
                                                   cfg.model.std)).to(device)
        outs.append(from_unit_tensor_layout(gen(x).float().cpu().numpy(), cfg.model.mean,
                                            cfg.model.std))
    return np.concatenate(outs)


def validate(gen: Generator, pairs: tuple[np.ndarray, np.ndarray], cfg: SrTrainConfig,
             device: torch.device) -> dict[str, float]:
    lr, hr = pairs
    sr = run_generator(gen, lr, cfg, device)
    size = hr.shape[1]
    bic = np.stack([cv2.resize(x, (size, size), interpolation=cv2.INTER_CUBIC) for x in lr])
    return {"val_psnr_sr": psnr_u8(sr, hr), "val_psnr_bicubic": psnr_u8(bic, hr),
            "val_l1_sr": float(np.abs(sr.astype(np.float32) - hr).mean() / 255.0)}


def load_generator_weights(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """(architecture, state dict) from a training checkpoint or a shipped SR manifest."""
    path = Path(path)
    if path.suffix == ".json":
        meta = json.loads(path.read_text())
        if meta.get("task") != "sr" or not meta.get("weights_file"):
            raise ValueError(f"{path}: expected an SR manifest with a weights_file, got task "
                             f"{meta.get('task')!r}")
        state = torch.load(path.parent / meta["weights_file"], map_location="cpu",
                           weights_only=True)
        return dict(meta["architecture"]), state
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != CKPT_FORMAT:
        raise ValueError(f"{path}: expected an SR checkpoint ({CKPT_FORMAT}), got "
                         f"{ckpt.get('format')!r}")
    return dict(ckpt["architecture"]), ckpt["generator_ema"]


def _save(obj: dict[str, Any], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def train(cfg: SrTrainConfig, out_dir: Path, resume: bool = False, init: Path | None = None,
          command: str | None = None) -> dict[str, Any]:
    """Run the training described by ``cfg`` into ``out_dir``; return the run summary."""
    t_start = time.time()
    torch.set_num_threads(cfg.threads)
    device = pick_device(cfg.device)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.resolved.json").write_text(cfg.model_dump_json(indent=2))

    bank, data_summary = training_bank(cfg)
    log.info("data: %d faces (%s); hr sizes in use %s", len(bank), data_summary,
             {s: len(i) for s, i in bank.by_size.items()})
    val = validation_pairs(cfg)
    params = pair_params(cfg)

    torch.manual_seed(cfg.seed)
    gcfg = generator_config(cfg)
    gen = build_generator(gcfg).to(device)
    if init is not None:
        arch, state = load_generator_weights(init)
        if GeneratorConfig.from_dict(arch) != gcfg:
            raise ValueError(f"--init {init}: expected architecture {gcfg.to_dict()}, got {arch}")
        gen.load_state_dict(state)
        log.info("initialised generator from %s", init)
    gen_ema = copy.deepcopy(gen).eval().requires_grad_(False)
    dcfg = DiscriminatorConfig(in_channels=gcfg.in_channels, base_width=cfg.model.d_base_width,
                               layers=cfg.model.d_layers, scales=cfg.model.d_scales)
    disc = MultiScaleDiscriminator(dcfg).to(device)
    feat = build_feature_net(cfg.loss.feature_net, cfg.loss.emotion_manifest,
                             cfg.loss.vgg19_weights, cfg.loss.feature_stages).to(device)
    o = cfg.optim
    opt_g = torch.optim.Adam(gen.parameters(), lr=o.lr_g, betas=tuple(o.betas))
    opt_d = torch.optim.Adam(disc.parameters(), lr=o.lr_d, betas=tuple(o.betas))

    step, prior_wall = 0, 0.0
    last_path = out_dir / "last.pt"
    if resume and last_path.is_file():
        ckpt = torch.load(last_path, map_location=device, weights_only=True)
        gen.load_state_dict(ckpt["generator"])
        gen_ema.load_state_dict(ckpt["generator_ema"])
        disc.load_state_dict(ckpt["discriminator"])
        opt_g.load_state_dict(ckpt["opt_g"])
        opt_d.load_state_dict(ckpt["opt_d"])
        step, prior_wall = int(ckpt["step"]), float(ckpt["metrics"].get("wall_s", 0.0))
        log.info("resumed from %s at step %d", last_path, step)

    mean, std = cfg.model.mean, cfg.model.std
    m_t = torch.tensor(mean, device=device).view(1, -1, 1, 1)
    s_t = torch.tensor(std, device=device).view(1, -1, 1, 1)
    feature_ref = {"feature_net": cfg.loss.feature_net,
                   "feature_weights_sha256": sha256_file(
                       getattr(feat, "weights_path", None) or cfg.loss.vgg19_weights)}

    def checkpoint(metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "format": CKPT_FORMAT,
            "generator": {k: v.detach().cpu() for k, v in gen.state_dict().items()},
            "generator_ema": {k: v.detach().cpu() for k, v in gen_ema.state_dict().items()},
            "discriminator": {k: v.detach().cpu() for k, v in disc.state_dict().items()},
            "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
            "architecture": gcfg.to_dict(), "discriminator_architecture": dcfg.to_dict(),
            "input_spec": {"color": cfg.model.color, "mean": list(mean), "std": list(std),
                           "scale_factor": cfg.pairs.scale},
            "config": json.loads(cfg.model_dump_json()), "step": step, "metrics": metrics,
            "data": {k: v for k, v in data_summary.items()}, "init": str(init) if init else None,
            **feature_ref,
        }

    metrics: dict[str, Any] = {"wall_s": prior_wall}
    if val is not None and step == 0:
        metrics.update(validate(gen_ema, val, cfg, device))
        log.info("step 0: %s", {k: round(v, 4) for k, v in metrics.items()})
    t_loop = time.time()
    sums = {"l1": 0.0, "perc": 0.0, "g_adv": 0.0, "d": 0.0}
    n_logged = 0
    stop_reason = "steps"
    while step < o.steps:
        if o.max_minutes is not None and (time.time() - t_loop) / 60.0 >= o.max_minutes:
            stop_reason = "max_minutes"
            break
        rng = np.random.default_rng([cfg.seed, step])
        lr_u8, hr_u8, _, _ = bank.sample_batch(o.batch_size, params, rng)
        x = torch.from_numpy(to_unit_tensor_layout(lr_u8, mean, std)).to(device)
        y = torch.from_numpy(to_unit_tensor_layout(hr_u8, mean, std)).to(device)
        gen.train()
        fake = gen(x)
        use_adv = cfg.loss.adversarial > 0 and step >= cfg.loss.adv_start_step
        d_loss = torch.zeros((), device=device)
        if use_adv:
            disc.requires_grad_(True)
            d_loss = lsgan_d_loss(disc(y), disc(fake.detach()))
            opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            opt_d.step()
            disc.requires_grad_(False)
        l1 = F.l1_loss(fake, y)
        perc = torch.zeros((), device=device)
        if cfg.loss.perceptual > 0:
            fake_unit = (fake * s_t + m_t).clamp(0, 1)
            perc = perceptual_l1(feat, fake_unit, y * s_t + m_t)
        g_adv = lsgan_g_loss(disc(fake)) if use_adv else torch.zeros((), device=device)
        loss = cfg.loss.l1 * l1 + cfg.loss.perceptual * perc + cfg.loss.adversarial * g_adv
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        with torch.no_grad():
            decay = min(o.ema_decay, (1 + step) / (10 + step))  # short warm-up of the average
            for pe, p in zip(gen_ema.parameters(), gen.parameters(), strict=True):
                pe.lerp_(p, 1.0 - decay)
            for be, b in zip(gen_ema.buffers(), gen.buffers(), strict=True):
                be.copy_(b)
        step += 1
        sums["l1"] += l1.item()
        sums["perc"] += perc.item()
        sums["g_adv"] += g_adv.item()
        sums["d"] += d_loss.item()
        n_logged += 1
        if step % cfg.log_every == 0 or step == o.steps:
            el = time.time() - t_loop
            print(f"step {step}/{o.steps} " + " ".join(
                f"{k} {v / n_logged:.4f}" for k, v in sums.items())
                + f" adv {'on' if use_adv else 'off'} elapsed {el:.0f}s",
                file=sys.stderr, flush=True)
            sums = dict.fromkeys(sums, 0.0)
            n_logged = 0
        if step % cfg.eval_every == 0 and val is not None:
            ev = validate(gen_ema, val, cfg, device)
            ev.update(step=step, wall_s=prior_wall + time.time() - t_start)
            print(f"step {step} val: psnr sr_ema {ev['val_psnr_sr']:.2f} dB bicubic "
                  f"{ev['val_psnr_bicubic']:.2f} dB", file=sys.stderr, flush=True)
            with open(out_dir / "metrics.jsonl", "a") as fh:
                fh.write(json.dumps(ev) + "\n")
            metrics.update(ev)
        if step % cfg.checkpoint_every == 0:
            metrics["wall_s"] = prior_wall + time.time() - t_start
            metrics["step"] = step
            _save(checkpoint(metrics), last_path)

    if val is not None:
        metrics.update(validate(gen_ema, val, cfg, device))
    metrics.update(step=step, wall_s=prior_wall + time.time() - t_start)
    _save(checkpoint(metrics), last_path)
    summary = {"name": cfg.name, "seed": cfg.seed, "command": command,
               "machine": machine_description(), "device": str(device),
               "torch": torch.__version__, "steps": step, "stop_reason": stop_reason,
               "wall_s": metrics["wall_s"], "metrics": metrics, "train_faces": len(bank),
               "data": data_summary, "checkpoint": str(last_path), **feature_ref}
    (out_dir / "run.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, default=None, help="run dir (default out_dir/name)")
    p.add_argument("--resume", action="store_true", help="continue from last.pt in the run dir")
    p.add_argument("--steps", type=int, default=None, help="override optim.steps")
    p.add_argument("--max-minutes", type=float, default=None, help="override optim.max_minutes")
    p.add_argument("--footage", type=Path, action="append", default=[],
                   help="video file or folder to harvest faces from (repeatable)")
    p.add_argument("--keep-base-data", action="store_true",
                   help="with --footage, keep the config's FER+ / image folders too")
    p.add_argument("--image-dir", type=Path, action="append", default=[],
                   help="extra folder of face images of any size (repeatable)")
    p.add_argument("--init", type=Path, default=None,
                   help="start from a generator: SR manifest JSON (with weights_file) or a "
                        "training checkpoint (fine-tuning)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = load_sr_config(args.config)
    raw = json.loads(cfg.model_dump_json())
    if args.steps is not None:
        raw["optim"]["steps"] = args.steps
    if args.max_minutes is not None:
        raw["optim"]["max_minutes"] = args.max_minutes
    if args.footage:
        raw["data"]["footage"] = [*raw["data"]["footage"], *map(str, args.footage)]
        if not args.keep_base_data:
            raw["data"]["ferplus_dirs"] = []
            raw["data"]["image_dirs"] = []
    if args.image_dir:
        raw["data"]["image_dirs"] = [*raw["data"]["image_dirs"], *map(str, args.image_dir)]
    cfg = SrTrainConfig.model_validate(raw)
    out = args.out or cfg.out_dir / cfg.name
    command = "python -m engines.train.sr " + " ".join(shlex.quote(a) for a in (
        argv if argv is not None else sys.argv[1:]))
    summary = train(cfg, out, resume=args.resume, init=args.init, command=command)
    print(json.dumps({k: summary[k] for k in ("steps", "wall_s", "metrics", "checkpoint")}),
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
