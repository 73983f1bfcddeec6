"""Evaluate an exported emotion model by face size.

    python -m engines.eval.emotion --model engines/weights/emotion_resnet.json \
        --data ../shared/data/ferplus/FER2013Valid --sizes 48,32,24,16,12 \
        --restore bilinear --json runs/eval/emotion.json

For each size the face is downscaled to that size (antialiased, ``cv2.INTER_AREA``) and
restored to the model input with ``--restore``, then fed through the shared preprocessing and
the chosen runtime backend. The JSON holds one row per size with accuracy against the
majority vote, per-class recall, the confusion matrix (also written as PNG), expected
calibration error (with the manifest temperature) and NLL. ``--fit-temperature`` also fits the
NLL-minimising temperature on this data, pooled over the sizes.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.eval.metrics import (
    confusion_matrix,
    expected_calibration_error,
    fit_temperature,
    nll,
    per_class_recall,
    softmax,
)
from engines.eval.report import command_line, print_table, write_json
from engines.preprocess import InputSpecLike, faces_to_input
from engines.train.degradations import degrade_to_size
from engines.train.ferplus import FaceDataset, load_dataset

log = logging.getLogger("engines.eval.emotion")
LogitsFn = Callable[[np.ndarray], np.ndarray]


def logits_at_size(logits_fn: LogitsFn, images: np.ndarray, spec: InputSpecLike, size_px: int,
                   restore: str, batch_size: int = 256) -> np.ndarray:
    """Degrade every image to ``size_px``, restore, preprocess and run ``logits_fn`` in batches."""
    outs = []
    hw = tuple(spec.input_size_hw)
    for i in range(0, len(images), batch_size):
        faces = [degrade_to_size(img, size_px, restore, hw) for img in images[i:i + batch_size]]
        outs.append(logits_fn(faces_to_input(faces, spec)))
    return np.concatenate(outs)


def size_row(logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str], size_px: int,
             restore: str, temperature: float) -> dict[str, Any]:
    probs = softmax(logits, temperature)
    preds = probs.argmax(axis=1)
    cm = confusion_matrix(labels, preds, len(class_names))
    recall = per_class_recall(cm)
    return {
        "size_px": int(size_px),
        "restore": restore,
        "accuracy": float((preds == labels).mean()),
        "n": len(labels),
        "per_class_recall": {c: (None if np.isnan(r) else float(r))
                             for c, r in zip(class_names, recall, strict=True)},
        "confusion": cm.tolist(),
        "ece": expected_calibration_error(probs, labels),
        "ece_uncalibrated": expected_calibration_error(softmax(logits), labels),
        "nll": nll(logits, labels, temperature),
    }


def evaluate_sizes(logits_fn: LogitsFn, dataset: FaceDataset, spec: InputSpecLike,
                   sizes: Sequence[int], restore: str, temperature: float = 1.0,
                   batch_size: int = 256) -> tuple[list[dict[str, Any]], dict[int, np.ndarray]]:
    rows, all_logits = [], {}
    for size in sizes:
        t0 = time.time()
        lg = logits_at_size(logits_fn, dataset.images, spec, size, restore, batch_size)
        all_logits[int(size)] = lg
        rows.append(size_row(lg, dataset.labels, dataset.class_names, size, restore, temperature))
        log.info("size %d px: accuracy %.4f (%d faces, %.1fs)", size, rows[-1]["accuracy"],
                 len(lg), time.time() - t0)
    return rows, all_logits


def fit_pooled_temperature(all_logits: dict[int, np.ndarray], labels: np.ndarray
                           ) -> dict[str, Any]:
    """One temperature for all sizes (the runtime does not know the original face size)."""
    lg = np.concatenate(list(all_logits.values()))
    lab = np.concatenate([labels] * len(all_logits))
    t = fit_temperature(lg, lab)
    return {"temperature": t, "sizes": sorted(all_logits, reverse=True),
            "nll_before": nll(lg, lab, 1.0), "nll_after": nll(lg, lab, t),
            "ece_before": expected_calibration_error(softmax(lg), lab),
            "ece_after": expected_calibration_error(softmax(lg, t), lab)}


def confusion_png(cm: np.ndarray, class_names: Sequence[str], path: Path, title: str = "",
                  cell: int = 56) -> Path:
    """Row-normalised confusion matrix heat map with counts, drawn with cv2 only."""
    n = len(class_names)
    left, top = 110, 40 + (20 if title else 0)
    img = np.full((top + n * cell + 100, left + n * cell + 10, 3), 255, np.uint8)
    rows = cm.sum(axis=1, keepdims=True).clip(min=1)
    frac = cm / rows
    font = cv2.FONT_HERSHEY_SIMPLEX
    if title:
        cv2.putText(img, title, (5, 18), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for i in range(n):
        for j in range(n):
            v = float(frac[i, j])
            colour = (255, int(255 * (1 - v)), int(255 * (1 - v)))  # white -> blue (BGR)
            y0, x0 = top + i * cell, left + j * cell
            cv2.rectangle(img, (x0, y0), (x0 + cell - 1, y0 + cell - 1), colour, -1)
            txt_col = (255, 255, 255) if v > 0.5 else (0, 0, 0)
            cv2.putText(img, str(int(cm[i, j])), (x0 + 4, y0 + cell // 2 + 4), font, 0.4,
                        txt_col, 1, cv2.LINE_AA)
        cv2.putText(img, class_names[i][:12], (4, top + i * cell + cell // 2 + 4), font, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    for j in range(n):
        x0 = left + j * cell
        org = (x0 + 2, top + n * cell + 14 + (j % 2) * 14)
        cv2.putText(img, class_names[j][:9], org, font, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "rows: true, columns: predicted", (left, top + n * cell + 60), font, 0.4,
                (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), img):
        raise OSError(f"cannot write {path}")
    return path


def sample_dataset(ds: FaceDataset, limit: int | None, seed: int) -> FaceDataset:
    if limit is None or limit >= len(ds):
        return ds
    idx = np.sort(np.random.default_rng(seed).choice(len(ds), size=limit, replace=False))
    return ds.subset(idx)


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--sizes: expected comma-separated ints, got {text!r}") \
            from err
    if not sizes or any(s < 2 for s in sizes):
        raise argparse.ArgumentTypeError(f"--sizes: expected sizes >= 2 px, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    from engines.emotion_model import EmotionModel

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model manifest JSON")
    p.add_argument("--data", type=Path, required=True, help="FER+ split folder or ROOT/<class>/")
    p.add_argument("--layout", choices=("auto", "ferplus", "folder"), default="auto")
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes("48,32,24,16,12"))
    p.add_argument("--restore", choices=("bilinear", "bicubic", "nearest"), default="bilinear")
    p.add_argument("--json", type=Path, required=True, help="output JSON path")
    p.add_argument("--png-dir", type=Path, default=None,
                   help="confusion-matrix PNGs (default: next to --json)")
    p.add_argument("--limit", type=int, default=None, help="evaluate a random sample of N faces")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fit-temperature", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)

    t0 = time.time()
    model = EmotionModel.load(args.model, args.backend, args.device, args.threads)
    m = model.manifest
    ds = sample_dataset(load_dataset(args.data, args.layout, image_size=48), args.limit,
                        args.seed)
    if ds.class_names != m.class_names:
        raise SystemExit(f"--data: expected classes {list(m.class_names)}, "
                         f"got {list(ds.class_names)}")
    rows, all_logits = evaluate_sizes(model.engine.infer, ds, m, args.sizes, args.restore,
                                      m.temperature)
    png_dir = args.png_dir or args.json.parent
    stem = args.json.stem
    for row in rows:
        png = png_dir / f"{stem}_confusion_{row['size_px']}px_{args.restore}.png"
        confusion_png(np.asarray(row["confusion"]), m.class_names, png,
                      f"{m.name} {row['size_px']} px {args.restore} acc {row['accuracy']:.3f}")
        row["confusion_png"] = str(png)
    out: dict[str, Any] = {
        "model": str(args.model), "model_name": m.name, "onnx_sha256": m.onnx_sha256,
        "data": str(args.data), "n": len(ds), "limit": args.limit, "seed": args.seed,
        "backend": args.backend, "class_names": list(m.class_names),
        "temperature": m.temperature, "rows": rows, "wall_s": None,
        "command": command_line("python -m engines.eval.emotion", argv),
    }
    if args.fit_temperature:
        out["temperature_fit"] = fit_pooled_temperature(all_logits, ds.labels)
    out["wall_s"] = time.time() - t0
    write_json(args.json, out)
    print_table(rows, [("size_px", "size_px", 7, ""), ("restore", "restore", 8, ""),
                       ("accuracy", "accuracy", 8, ".4f"), ("ece", "ece", 6, ".3f"),
                       ("n", "n", 6, "")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
