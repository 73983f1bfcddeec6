"""Issue 10 product measure: does SR help emotion on faces as a camera delivers them?

    python -m engines.eval.sr_cctv_emotion \\
        --arm bilinear --arm sr_generic=engines/weights/sr_generator.json \\
        --arm sr_camera=runs/sr/sr_camera/last.pt --arm joint=runs/sr/sr_camera/last.pt \\
        --epochs 2 --json runs/eval/sr_cctv_emotion.json

Each *arm* is one restoration pipeline with a classifier trained for it, as in the second
paper: every arm fine-tunes the shipped emotion ResNet with the same faces, camera crops,
batches, flips, steps and learning-rate schedule; only the restoration differs.

- ``bilinear``: the crop resized to 48 px (``cv2.INTER_LINEAR``);
- ``NAME=SR_MODEL``: faces inside ``--sr-band`` go through the SR generator as the pipeline
  runs it (``pipeline.enhance``: the crop fitted to the generator's 24-px input, bicubic when
  enlarging, x4 to 96 px, ``INTER_AREA`` to 48 px); faces outside the band are bilinear. The
  generator is frozen;
- ``joint=SR_MODEL``: the same, but the generator is fine-tuned with the classifier
  (task-aware SR): cross-entropy through the generator, plus its own self-supervised L1 on
  camera-domain pairs (:mod:`engines.train.sr_camera`) at weight ``--joint-fidelity`` so it
  stays a restorer.

Training faces: FER2013Train through the camera simulator (:mod:`engines.cctv_sim`, random
camera per chunk of 480 faces: H.264/HEVC 300-4000 kbit/s, blur, noise; faces 12-32 px,
cached). Test faces: FER2013Valid (majority vote) through the simulator at each ``--sizes`` and
``--bitrate-kbps`` (H.264, blur 0.5, noise 2: :class:`engines.eval.conditions.Condition`).
Accuracy is the arg-max over the emotion outputs (the ``not_face`` output is ignored; the
shipped model's logit adjustment and test-time flip are not applied, the same for every arm).
Differences to ``bilinear`` are paired per face, with their standard error.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.cctv_sim import SimRanges, simulate_dataset
from engines.eval.conditions import Condition
from engines.eval.report import command_line, print_table, write_json
from engines.eval.sr_emotion import load_emotion_resnet, paired_difference
from engines.preprocess import resize_face
from engines.train.emotion_mix import default_clip
from engines.train.ferplus import default_shared_dir, load_dataset_cached

log = logging.getLogger("engines.eval.sr_cctv_emotion")
SR_INPUT_PX = 24  # the shipped generators' manifest input (engines.build sr --input-size 24)
OUT_PX = 48


@dataclass(frozen=True)
class Arm:
    name: str
    kind: str  # bilinear | sr | joint
    sr_model: Path | None = None


def parse_arm(text: str) -> Arm:
    """``bilinear`` | ``NAME=SR_MODEL`` | ``joint=SR_MODEL`` (an ``.json`` manifest or ``.pt``)."""
    if text == "bilinear":
        return Arm("bilinear", "bilinear")
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--arm: expected bilinear or NAME=SR_MODEL, got {text!r}")
    return Arm(name, "joint" if name.startswith("joint") else "sr", Path(path))


def sr_input_px(model: Path) -> int:
    """The input side the pipeline fits crops to: the manifest's, or 24 px for a checkpoint
    (what ``engines.build sr --input-size 24`` will export)."""
    if model.suffix == ".json":
        return int(json.loads(model.read_text())["input_size_hw"][0])
    return SR_INPUT_PX


def fit_for_sr(crops: list[np.ndarray], size_px: int = SR_INPUT_PX) -> np.ndarray:
    """(N, size, size): each crop fitted to the generator input as ``engines.sr_io`` does."""
    return np.stack([resize_face(c, (size_px, size_px), enlarge=cv2.INTER_CUBIC)
                     for c in crops])


def bilinear(crops: list[np.ndarray]) -> np.ndarray:
    return np.stack([cv2.resize(c, (OUT_PX, OUT_PX), interpolation=cv2.INTER_LINEAR)
                     for c in crops])


def restore(crops: list[np.ndarray], sizes: np.ndarray, band: tuple[int, int],
            sr_fn: Callable[[np.ndarray], np.ndarray] | None,
            sr_px: int = SR_INPUT_PX) -> np.ndarray:
    """(N, 48, 48): SR for faces whose size is inside ``band``, bilinear for the rest."""
    out = bilinear(crops)
    if sr_fn is None:
        return out
    sel = np.flatnonzero((sizes >= band[0]) & (sizes <= band[1]))
    if len(sel):
        up = sr_fn(fit_for_sr([crops[i] for i in sel], sr_px))
        out[sel] = np.stack([cv2.resize(u, (OUT_PX, OUT_PX), interpolation=cv2.INTER_AREA)
                             for u in up])
    return out


def generator_normalisation(path: Path) -> tuple[list[float], list[float]]:
    """(mean, std) of an SR generator's input from its manifest or training checkpoint."""
    if path.suffix == ".json":
        meta = json.loads(path.read_text())
        return list(meta["mean"]), list(meta["std"])
    import torch

    spec = torch.load(path, map_location="cpu", weights_only=True)["input_spec"]
    return list(spec["mean"]), list(spec["std"])


def main(argv: list[str] | None = None) -> int:
    import torch
    import torch.nn.functional as F

    from engines.eval.sr import sr_fn_from_model
    from engines.models.generator import build_generator
    from engines.train.emotion import training_memory_format
    from engines.train.sr import camera_pairs, load_generator_weights
    from engines.train.sr_config import load_sr_config
    from engines.train.sr_data import to_unit_tensor_layout

    p = argparse.ArgumentParser(prog="python -m engines.eval.sr_cctv_emotion", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--arm", type=parse_arm, action="append", required=True)
    p.add_argument("--emotion-model", type=Path,
                   default=Path("engines/weights/emotion_resnet.json"))
    p.add_argument("--data", type=Path, default=None, help="FER+ root")
    p.add_argument("--clip", type=Path, default=None, help="simulator background clip")
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[16, 24])
    p.add_argument("--bitrate-kbps", type=lambda s: [float(v) for v in s.split(",")],
                   default=[1000.0])
    p.add_argument("--train-sizes", type=lambda s: tuple(int(v) for v in s.split(",")),
                   default=(12, 32), help="min,max face size of the training crops, px")
    p.add_argument("--sr-band", type=lambda s: tuple(int(v) for v in s.split(",")),
                   default=(12, 32), help="min,max face size that gets SR, px")
    p.add_argument("--train-images", type=int, default=28385)
    p.add_argument("--val-images", type=int, default=None)
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--joint-lr-g", type=float, default=5e-5)
    p.add_argument("--joint-fidelity", type=float, default=1.0)
    p.add_argument("--sr-config", type=Path, default=Path("configs/train/sr_camera.yaml"),
                   help="camera-pair settings for the joint arm's fidelity loss")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"))
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    t0 = time.time()
    torch.set_num_threads(args.threads)
    root = args.data or default_shared_dir() / "data/ferplus"
    clip = args.clip or default_clip()
    train = load_dataset_cached(root / "FER2013Train", args.cache_dir, "ferplus", 48)
    val = load_dataset_cached(root / "FER2013Valid", args.cache_dir, "ferplus", 48)
    pair_faces = list(train.images)  # the joint arm's fidelity pairs: the SR training's own
    rng = np.random.default_rng(args.seed)
    if args.train_images < len(train):
        train = train.subset(np.sort(rng.choice(len(train), args.train_images, replace=False)))
    if args.val_images and args.val_images < len(val):
        val = val.subset(np.arange(args.val_images))
    sim = simulate_dataset(train.images, SimRanges(min_size_px=args.train_sizes[0],
                                                   max_size_px=args.train_sizes[1]),
                           clip, args.seed, cache_dir=args.cache_dir)
    train_crops = [sim.crop(i) for i in range(len(sim))]
    conditions = [Condition("cctv", s, b) for s in args.sizes for b in args.bitrate_kbps]
    val_crops = {c.name: c.degrade(val.images, clip, args.seed) for c in conditions}

    from engines.preprocess import faces_to_input

    base, spec, meta = load_emotion_resnet(args.emotion_model)
    n_emotions = len(train.class_names)
    memory_format = training_memory_format(base.cfg)
    targets = np.zeros((len(train), max(base.cfg.num_classes, n_emotions)), np.float32)
    targets[:, :n_emotions] = train.soft_targets
    n_steps = int(np.ceil(args.epochs * len(train) / args.batch_size))
    order = np.concatenate([np.random.default_rng([args.seed, 1 + e]).permutation(len(train))
                            for e in range(int(np.ceil(args.epochs)))])
    flips = np.random.default_rng([args.seed, 99]).random(len(order)) < 0.5
    c_mean, c_std = float(spec.mean[0]), float(spec.std[0])

    def predict(model: torch.nn.Module, faces: np.ndarray) -> np.ndarray:
        model.eval()
        outs = []
        with torch.inference_mode():
            for i in range(0, len(faces), 512):
                x = torch.from_numpy(faces_to_input(list(faces[i:i + 512]), spec))
                outs.append(model(x)[:, :n_emotions].numpy())
        return np.concatenate(outs).argmax(1)

    def lr_at(step: int, peak: float) -> float:
        return peak * 0.5 * (1 + np.cos(np.pi * step / n_steps))

    rows: list[dict[str, Any]] = []
    correct: dict[tuple[str, str, str], np.ndarray] = {}
    timings: dict[str, float] = {}
    train_sizes = sim.sizes_px.astype(np.int64)
    val_sizes = {c.name: np.full(len(val), c.size_px) for c in conditions}
    pairs_bank = None
    for arm in args.arm:
        t_arm = time.time()
        sr_fn, sr_info, sr_px = None, None, SR_INPUT_PX
        if arm.sr_model is not None:
            sr_fn, sr_info = sr_fn_from_model(arm.sr_model, args.threads)
            sr_px = sr_input_px(arm.sr_model)
        t_r = time.time()
        restored_train = restore(train_crops, train_sizes, args.sr_band, sr_fn, sr_px)
        timings[f"{arm.name}_restore_train_faces_per_s"] = len(train_crops) / (time.time() - t_r)
        restored_val = {name: restore(crops, val_sizes[name], args.sr_band, sr_fn, sr_px)
                        for name, crops in val_crops.items()}
        for c in conditions:
            ok = predict(base, restored_val[c.name]) == val.labels
            correct[("shipped", arm.name, c.name)] = ok
            rows.append({"arm": arm.name, "classifier": "shipped", **c.describe(),
                         "accuracy": float(ok.mean()), "n": len(val)})
        torch.manual_seed(args.seed)
        model = copy.deepcopy(base).to(memory_format=memory_format)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.02)
        gen = opt_g = None
        if arm.kind == "joint":
            arch, state = load_generator_weights(arm.sr_model)
            gen = build_generator(arch)
            gen.load_state_dict(state)
            opt_g = torch.optim.Adam(gen.parameters(), lr=args.joint_lr_g, betas=(0.5, 0.99))
            g_mean, g_std = generator_normalisation(arm.sr_model)
            sr_cfg = load_sr_config(args.sr_config)
            if pairs_bank is None:
                from engines.train.sr_camera import CameraPairBank

                pairs_bank = CameraPairBank(camera_pairs(sr_cfg, pair_faces, sr_cfg.seed))
            fitted = fit_for_sr(train_crops, sr_px)
            in_band = (train_sizes >= args.sr_band[0]) & (train_sizes <= args.sr_band[1])
        t_ft = time.time()
        for step in range(n_steps):
            b = order[step * args.batch_size:(step + 1) * args.batch_size]
            flip = flips[step * args.batch_size:][:len(b)]
            lr = lr_at(step, args.lr)
            for g in opt.param_groups:
                g["lr"] = lr
            faces = [f[:, ::-1] if fl else f for f, fl in zip(restored_train[b], flip, strict=True)]
            x = torch.from_numpy(faces_to_input([np.ascontiguousarray(f) for f in faces], spec))
            fid = torch.zeros(())
            if gen is not None:
                sel = np.flatnonzero(in_band[b])
                if len(sel):
                    lr_u8 = np.stack([fitted[b[i]][:, ::-1] if flip[i] else fitted[b[i]]
                                      for i in sel])
                    gx = torch.from_numpy(to_unit_tensor_layout(np.ascontiguousarray(lr_u8),
                                                                g_mean, g_std))
                    gen.train()
                    up = gen(gx) * float(g_std[0]) + float(g_mean[0])  # unit intensity
                    up = F.avg_pool2d(up.clamp(0, 1), up.shape[-1] // OUT_PX)  # 96 -> 48, area
                    x = x.clone()
                    x[torch.from_numpy(sel)] = (up - c_mean) / c_std
                    p_lr, p_hr, _, _ = pairs_bank.sample_batch(
                        32, None, np.random.default_rng([args.seed, 7, step]))
                    fid = F.l1_loss(gen(torch.from_numpy(to_unit_tensor_layout(
                        p_lr, g_mean, g_std))), torch.from_numpy(
                        to_unit_tensor_layout(p_hr, g_mean, g_std)))
                for g in opt_g.param_groups:
                    g["lr"] = lr_at(step, args.joint_lr_g)
            x = x.contiguous(memory_format=memory_format)
            model.train()
            target = torch.from_numpy(targets[b])
            ce = -(target * torch.log_softmax(model(x), 1)).sum(1).mean()
            loss = ce + args.joint_fidelity * fid
            opt.zero_grad(set_to_none=True)
            if opt_g is not None:
                opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if opt_g is not None:
                opt_g.step()
            if (step + 1) % 20 == 0:
                log.info("%s step %d/%d ce %.4f fidelity %.4f", arm.name, step + 1, n_steps,
                         ce.item(), fid.item())
        timings[f"{arm.name}_finetune_s"] = time.time() - t_ft
        if gen is not None:
            gen.eval()

            def joint_sr(x_u8: np.ndarray, _gen=gen, _m=g_mean, _s=g_std) -> np.ndarray:
                from engines.train.sr_data import from_unit_tensor_layout

                with torch.inference_mode():
                    return np.concatenate([from_unit_tensor_layout(
                        _gen(torch.from_numpy(to_unit_tensor_layout(x_u8[i:i + 256], _m, _s)))
                        .numpy(), _m, _s) for i in range(0, len(x_u8), 256)])

            restored_val = {name: restore(crops, val_sizes[name], args.sr_band, joint_sr, sr_px)
                            for name, crops in val_crops.items()}
            out_dir = args.json.parent
            out_dir.mkdir(parents=True, exist_ok=True)
            torch.save({"generator": gen.state_dict(), "classifier": model.state_dict()},
                       out_dir / f"{arm.name}_weights.pt")
        for c in conditions:
            ok = predict(model, restored_val[c.name]) == val.labels
            correct[("fine-tuned", arm.name, c.name)] = ok
            rows.append({"arm": arm.name, "classifier": "fine-tuned", **c.describe(),
                         "accuracy": float(ok.mean()), "n": len(val)})
            log.info("%s %s fine-tuned: accuracy %.4f", arm.name, c.name, ok.mean())
        timings[f"{arm.name}_s"] = time.time() - t_arm
        rows[-1]["sr_model"] = sr_info
    comparisons = []
    names = [a.name for a in args.arm]
    if "bilinear" in names:
        comparisons = [{"arm": a, "classifier": clf, "condition": c.name,
                        **paired_difference(correct[(clf, a, c.name)],
                                            correct[(clf, "bilinear", c.name)])}
                       for a in names if a != "bilinear"
                       for clf in ("shipped", "fine-tuned") for c in conditions]
    out = {"arms": [{"name": a.name, "kind": a.kind, "sr_model": str(a.sr_model)}
                    for a in args.arm],
           "emotion_model": str(args.emotion_model),
           "emotion_weights_sha256": meta.get("weights_sha256"),
           "train_images": len(train), "train_sizes": list(args.train_sizes),
           "sr_band": list(args.sr_band), "epochs": args.epochs, "steps": n_steps,
           "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
           "joint": {"lr_g": args.joint_lr_g, "fidelity": args.joint_fidelity},
           "val": str(root / "FER2013Valid"), "rows": rows, "minus_bilinear": comparisons,
           "timings": timings, "wall_s": time.time() - t0,
           "command": command_line("python -m engines.eval.sr_cctv_emotion", argv)}
    write_json(args.json, out)
    print_table(rows, [("arm", "arm", 12, ""), ("classifier", "classifier", 10, ""),
                       ("size", "size_px", 4, "d"), ("kbps", "bitrate_kbps", 6, ".0f"),
                       ("accuracy", "accuracy", 8, ".4f")])
    if comparisons:
        print_table(comparisons, [("arm", "arm", 12, ""), ("classifier", "classifier", 10, ""),
                                  ("condition", "condition", 20, ""),
                                  ("minus bilinear", "difference_points", 14, ".2f"),
                                  ("se", "se_points", 5, ".2f")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
