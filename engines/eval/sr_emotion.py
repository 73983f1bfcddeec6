"""Product measure of face SR: emotion accuracy on tiny faces restored by SR vs bilinear.

    python -m engines.eval.sr_emotion --sr-model engines/weights/sr_generator.json \
        --emotion-model engines/weights/emotion_resnet.json --sizes 12,16 \
        --train-images 12000 --epochs 1 --json runs/eval/sr_emotion.json

As in the second paper (SR for emotion recognition on low-quality media), a classifier is
trained for each restoration method. Here each is fine-tuned from the shipped emotion ResNet
(not trained from scratch: CPU budget) on FER2013Train faces downscaled to one of ``--sizes``
(antialiased ``INTER_AREA``, as in the emotion evaluation) and restored to 48 px by that
method, with the same seed, images, sizes and order for both methods. Restorations:

- ``bilinear``: ``cv2.INTER_LINEAR`` back to 48 px (the emotion model's own baseline);
- ``sr``: the SR generator at the face's own size (x4: 12 -> 48, 16 -> 64, then
  ``INTER_AREA`` to 48), luminance model on the gray face.

Accuracy is on FER2013Valid (majority vote, unknown / NF dropped) at each size, for the
shipped classifier as is and for each fine-tuned classifier.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.eval.report import command_line, print_table, write_json
from engines.train.degradations import downscale
from engines.train.ferplus import default_shared_dir, load_dataset_cached

log = logging.getLogger("engines.eval.sr_emotion")


def restore_batch(images: np.ndarray, size_px: int, method: str, sr_fn=None) -> np.ndarray:
    """(N, 48, 48) gray -> downscaled to ``size_px`` -> restored to (N, 48, 48)."""
    small = np.stack([downscale(img, size_px) for img in images])
    if method == "bilinear":
        return np.stack([cv2.resize(s, (48, 48), interpolation=cv2.INTER_LINEAR) for s in small])
    if method == "sr":
        up = sr_fn(small)
        if up.shape[1] == 48:
            return up
        return np.stack([cv2.resize(u, (48, 48), interpolation=cv2.INTER_AREA) for u in up])
    raise ValueError(f"restore: expected bilinear|sr, got {method!r}")


def paired_difference(correct_sr: np.ndarray, correct_base: np.ndarray) -> dict[str, float]:
    """SR minus baseline accuracy on the same faces, with its paired standard error.

    Only the faces one method gets right and the other wrong (the discordant pairs) move the
    difference, so the paired error is much smaller than that of either accuracy alone.
    """
    a, b = correct_sr.astype(bool), correct_base.astype(bool)
    n = len(a)
    diff = (a.astype(np.float64) - b.astype(np.float64))
    se = float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
    return {"difference_points": 100.0 * float(diff.mean()), "se_points": 100.0 * se,
            "sr_only_correct": int((a & ~b).sum()), "base_only_correct": int((~a & b).sum()),
            "n": n}


def load_emotion_resnet(manifest: Path) -> tuple[Any, Any, dict[str, Any]]:
    """(ResNet with the manifest's weights, its InputSpec, the manifest dict), for fine-tuning.

    The weights load with ``torch.load(weights_only=True)``: no code from the file runs.
    """
    import torch

    from engines.models.resnet import build_resnet
    from engines.preprocess import InputSpec

    meta = json.loads(Path(manifest).read_text())
    spec = InputSpec(tuple(meta["input_size_hw"]), meta["color"], tuple(meta["mean"]),
                     tuple(meta["std"]))
    model = build_resnet(meta["architecture"])
    model.load_state_dict(torch.load(Path(manifest).parent / meta["weights_file"],
                                     map_location="cpu", weights_only=True))
    return model, spec, meta


def main(argv: list[str] | None = None) -> int:
    import torch

    from engines.eval.sr import sr_fn_from_model
    from engines.preprocess import faces_to_input
    from engines.train.emotion import training_memory_format

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sr-model", type=Path, required=True)
    p.add_argument("--emotion-model", type=Path,
                   default=Path("engines/weights/emotion_resnet.json"))
    p.add_argument("--data", type=Path, default=None,
                   help="FER+ root (default $CCTV_SHARED/data/ferplus)")
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[12, 16])
    p.add_argument("--train-images", type=int, default=12000)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache-dir", type=Path, default=Path("runs/cache"),
                   help="decoded-dataset cache (none: 'none')")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    t0 = time.time()
    torch.set_num_threads(args.threads)
    root = args.data or default_shared_dir() / "data/ferplus"
    cache = None if str(args.cache_dir) == "none" else args.cache_dir
    train = load_dataset_cached(root / "FER2013Train", cache, "ferplus", 48)
    val = load_dataset_cached(root / "FER2013Valid", cache, "ferplus", 48)
    rng = np.random.default_rng(args.seed)
    idx = np.sort(rng.choice(len(train), min(args.train_images, len(train)), replace=False))
    train = train.subset(idx)
    base, spec, meta = load_emotion_resnet(args.emotion_model)
    memory_format = training_memory_format(base.cfg)
    sr_fn, sr_info = sr_fn_from_model(args.sr_model, args.threads)
    if sr_info["color"] != "gray":
        def gray_sr(x: np.ndarray) -> np.ndarray:
            rgb = sr_fn(np.stack([cv2.cvtColor(v, cv2.COLOR_GRAY2RGB) for v in x]))
            return np.stack([cv2.cvtColor(v, cv2.COLOR_RGB2GRAY) for v in rgb])
        sr_gray = gray_sr
    else:
        sr_gray = sr_fn

    # the same size for each training face under both methods: a paired comparison
    train_sizes = np.asarray(args.sizes)[rng.integers(len(args.sizes), size=len(train))]
    epochs_order = np.random.default_rng([args.seed, 1])
    n_steps = int(np.ceil(args.epochs * len(train) / args.batch_size))
    order = np.concatenate([epochs_order.permutation(len(train))
                            for _ in range(int(np.ceil(args.epochs)) or 1)])
    flips = np.random.default_rng([args.seed, 2]).random(len(order)) < 0.5

    def predict(model: torch.nn.Module, faces: np.ndarray) -> np.ndarray:
        model.eval()
        outs = []
        with torch.inference_mode():
            for i in range(0, len(faces), 512):
                x = torch.from_numpy(faces_to_input(list(faces[i:i + 512]), spec))
                outs.append(model(x).numpy())
        return np.concatenate(outs).argmax(1)

    rows: list[dict[str, Any]] = []
    correct: dict[tuple[str, str, int], np.ndarray] = {}
    val_restored: dict[tuple[str, int], np.ndarray] = {}
    timings: dict[str, float] = {}
    for method in ("bilinear", "sr"):
        t_m = time.time()
        for size in args.sizes:
            val_restored[(method, size)] = restore_batch(val.images, size, method, sr_gray)
        restored_train = np.empty_like(train.images)
        for size in args.sizes:
            sel = np.flatnonzero(train_sizes == size)
            restored_train[sel] = restore_batch(train.images[sel], size, method, sr_gray)
        timings[f"restore_{method}_s"] = time.time() - t_m
        for size in args.sizes:
            correct[("shipped", method, size)] = predict(base, val_restored[(method, size)]) \
                == val.labels
            acc = float(correct[("shipped", method, size)].mean())
            rows.append({"restore": method, "size_px": size, "classifier": "shipped",
                         "accuracy": acc, "n": len(val)})
        torch.manual_seed(args.seed)
        model = copy.deepcopy(base).to(memory_format=memory_format)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
        t_ft = time.time()
        for step in range(n_steps):
            b = order[step * args.batch_size:(step + 1) * args.batch_size]
            faces = [f[:, ::-1] if flip else f for f, flip in
                     zip(restored_train[b], flips[step * args.batch_size:][:len(b)], strict=True)]
            x = torch.from_numpy(faces_to_input([np.ascontiguousarray(f) for f in faces], spec))
            x = x.contiguous(memory_format=memory_format)
            target = torch.from_numpy(train.soft_targets[b])
            lr = args.lr * 0.5 * (1 + np.cos(np.pi * step / n_steps))
            for g in opt.param_groups:
                g["lr"] = lr
            model.train()
            loss = -(target * torch.log_softmax(model(x), 1)).sum(1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if (step + 1) % 20 == 0:
                log.info("%s fine-tune step %d/%d loss %.4f", method, step + 1, n_steps,
                         loss.item())
        timings[f"finetune_{method}_s"] = time.time() - t_ft
        for size in args.sizes:
            correct[("fine-tuned", method, size)] = predict(
                model, val_restored[(method, size)]) == val.labels
            acc = float(correct[("fine-tuned", method, size)].mean())
            rows.append({"restore": method, "size_px": size, "classifier": "fine-tuned",
                         "accuracy": acc, "n": len(val)})
            log.info("%s %d px fine-tuned: accuracy %.4f", method, size, acc)
    comparisons = [{"classifier": clf, "size_px": size,
                    **paired_difference(correct[(clf, "sr", size)],
                                        correct[(clf, "bilinear", size)])}
                   for clf in ("shipped", "fine-tuned") for size in args.sizes]
    out = {
        "sr_model": sr_info, "emotion_model": str(args.emotion_model),
        "emotion_weights_sha256": meta.get("weights_sha256"),
        "train_images": len(train), "train_sizes": args.sizes, "epochs": args.epochs,
        "steps": n_steps, "batch_size": args.batch_size, "lr": args.lr, "seed": args.seed,
        "val": str(root / "FER2013Valid"), "label": "majority vote", "rows": rows,
        "sr_minus_bilinear": comparisons,
        "timings": timings, "wall_s": time.time() - t0,
        "command": command_line("python -m engines.eval.sr_emotion", argv),
    }
    write_json(args.json, out)
    print_table(rows, [("classifier", "classifier", 10, ""), ("restore", "restore", 8, ""),
                       ("size", "size_px", 4, ""), ("accuracy", "accuracy", 8, ".4f")])
    for c in comparisons:
        print(f"{c['classifier']:>10} SR - bilinear at {c['size_px']} px: "
              f"{c['difference_points']:+.2f} +- {c['se_points']:.2f} points (paired SE)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
