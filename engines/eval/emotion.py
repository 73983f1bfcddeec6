"""Evaluate an exported emotion model by face size and camera condition.

    python -m engines.eval.emotion --model engines/weights/emotion_resnet.json \
        --data ../shared/data/ferplus/FER2013Valid --sizes 48,24,16 \
        --degrade cctv --bitrate-kbps 1000,4000 --json runs/eval/emotion.json

Conditions (:mod:`engines.eval.conditions`): every size clean (antialiased downscale), and with
``--degrade cctv`` every size through the camera simulator at each bitrate (``--degrade jpeg``:
the cheap JPEG path). Each face is then restored to the model input with ``--restore`` and run
through the shared preprocessing and the chosen backend. One JSON row per condition holds
accuracy against the majority vote, per-class recall and precision, the confusion matrix (also
written as PNG), calibration (ECE, NLL with the manifest temperature), the negative-emotion
union's recall and precision, its false-positive rate on faces labelled neutral or happiness,
and the share of faces the non-face output rejects. ``--nonface-heldout`` also scores non-face
crops mined from the held-out part of the CCTV clips. ``--fit-temperature`` fits the
NLL-minimising temperature on this data, pooled over the conditions.

``--model`` takes the manifest JSON or the ``.onnx`` beside it; ``--layout folder`` reads
``ROOT/<class>/`` in the model's class order, with ``--class-map happy=happiness,...``.
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

from engines.eval.conditions import Condition, conditions_from_args, restored_faces
from engines.eval.metrics import (
    confusion_matrix,
    expected_calibration_error,
    fit_temperature,
    nll,
    per_class_recall,
    softmax,
)
from engines.eval.report import command_line, print_table, write_json
from engines.manifest import ModelManifest
from engines.preprocess import InputSpecLike, faces_to_input
from engines.train.ferplus import DatasetError, FaceDataset, load_dataset

log = logging.getLogger("engines.eval.emotion")
LogitsFn = Callable[[np.ndarray], np.ndarray]
NEGATIVE_CLASSES = ("sadness", "anger", "disgust", "fear", "contempt")
BENIGN_CLASSES = ("neutral", "happiness")


def logits_for_faces(logits_fn: LogitsFn, faces: Sequence[np.ndarray], spec: InputSpecLike,
                     batch_size: int = 256) -> np.ndarray:
    return np.concatenate([logits_fn(faces_to_input(list(faces[i:i + batch_size]), spec))
                           for i in range(0, len(faces), batch_size)])


def per_class_precision(cm: np.ndarray) -> np.ndarray:
    predicted = cm.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(predicted > 0, np.diag(cm) / np.maximum(predicted, 1), np.nan)


def negative_union(labels: np.ndarray, preds: np.ndarray, class_names: Sequence[str]
                   ) -> dict[str, Any]:
    """The alert rules' negative emotions taken as one class.

    recall: negative faces predicted as any negative emotion; precision: negative predictions
    that are negative faces; false-positive rate: neutral or happiness faces predicted negative.
    """
    neg = [i for i, c in enumerate(class_names) if c in NEGATIVE_CLASSES]
    benign = [i for i, c in enumerate(class_names) if c in BENIGN_CLASSES]
    true_neg, pred_neg = np.isin(labels, neg), np.isin(preds, neg)
    is_benign = np.isin(labels, benign)

    def ratio(a: np.ndarray, b: np.ndarray) -> float | None:
        return float(a.sum() / b.sum()) if b.sum() else None

    return {"classes": [class_names[i] for i in neg],
            "recall": ratio(true_neg & pred_neg, true_neg),
            "precision": ratio(true_neg & pred_neg, pred_neg),
            "false_positive_rate_neutral_happiness": ratio(is_benign & pred_neg, is_benign),
            "n_negative": int(true_neg.sum()), "n_neutral_happiness": int(is_benign.sum())}


def _nan_to_none(values: np.ndarray, names: Sequence[str]) -> dict[str, float | None]:
    return {c: (None if np.isnan(v) else float(v)) for c, v in zip(names, values, strict=True)}


def condition_row(emotion_logits: np.ndarray, labels: np.ndarray, class_names: Sequence[str],
                  temperature: float, non_face_prob: np.ndarray | None = None,
                  non_face_threshold: float = 1.0) -> dict[str, Any]:
    """Metrics of one condition from (N, E) adjusted emotion logits and majority labels."""
    probs = softmax(emotion_logits, temperature)
    preds = probs.argmax(axis=1)
    cm = confusion_matrix(labels, preds, len(class_names))
    row = {
        "accuracy": float((preds == labels).mean()),
        "n": len(labels),
        "per_class_recall": _nan_to_none(per_class_recall(cm), class_names),
        "per_class_precision": _nan_to_none(per_class_precision(cm), class_names),
        "negative_union": negative_union(labels, preds, class_names),
        "confusion": cm.tolist(),
        "ece": expected_calibration_error(probs, labels),
        "ece_uncalibrated": expected_calibration_error(softmax(emotion_logits), labels),
        "nll": nll(emotion_logits, labels, temperature),
    }
    if non_face_prob is not None:
        row["faces_rejected_as_non_face"] = float((non_face_prob >= non_face_threshold).mean())
    return row


def condition_logits(logits_fn: LogitsFn, dataset: FaceDataset, spec: InputSpecLike,
                     conditions: Sequence[Condition], restore: str, clip: Path | None,
                     seed: int) -> dict[str, np.ndarray]:
    """Raw (N, C) logits of every face under each condition, keyed by condition name."""
    out = {}
    for cond in conditions:
        t0 = time.time()
        faces = restored_faces(cond, dataset.images, tuple(spec.input_size_hw), restore, clip,
                               seed)
        out[cond.name] = logits_for_faces(logits_fn, faces, spec)
        log.info("%s: %d faces in %.1fs", cond.name, len(faces), time.time() - t0)
    return out


def fit_pooled_temperature(all_logits: dict[Any, np.ndarray], labels: np.ndarray
                           ) -> dict[str, Any]:
    """One temperature for all sizes (the runtime does not know the original face size)."""
    lg = np.concatenate(list(all_logits.values()))
    lab = np.concatenate([labels] * len(all_logits))
    t = fit_temperature(lg, lab)
    return {"temperature": t, "conditions": list(all_logits),
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


def _int_list(text: str, what: str, minimum: float) -> list[int]:
    try:
        values = [int(float(s)) for s in text.split(",") if s.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"{what}: expected comma-separated numbers, got "
                                         f"{text!r}") from err
    if not values or any(v < minimum for v in values):
        raise argparse.ArgumentTypeError(f"{what}: expected values >= {minimum}, got {text!r}")
    return values


def parse_sizes(text: str) -> list[int]:
    return _int_list(text, "--sizes", 2)


def parse_bitrates(text: str) -> list[int]:
    return _int_list(text, "--bitrate-kbps", 10)


def parse_class_map(text: str) -> dict[str, str]:
    """``happy=happiness,angry=anger`` -> ``{"happy": "happiness", "angry": "anger"}``."""
    out = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        folder, sep, cls = part.partition("=")
        if not sep or not folder.strip() or not cls.strip():
            raise argparse.ArgumentTypeError(f"--class-map: expected FOLDER=CLASS pairs, got "
                                             f"{part!r}")
        out[folder.strip()] = cls.strip()
    return out


def resolve_manifest_path(path: Path) -> Path:
    """The manifest for ``--model``: the JSON itself, or the ``.json`` beside an ``.onnx``."""
    from pipeline.errors import ModelError

    if path.suffix.lower() == ".onnx":
        candidate = path.with_suffix(".json")
        if not candidate.is_file():
            raise ModelError(f"--model {path}: an ONNX file needs its manifest beside it; "
                             f"expected {candidate}, got none")
        return candidate
    if path.suffix.lower() != ".json":
        raise ModelError(f"--model {path}: expected a manifest .json (or the .onnx beside "
                         f"one), got a {path.suffix or 'suffix-less'} file")
    return path


def nonface_heldout_row(model: Any, size_px: int = 48) -> dict[str, Any]:
    """Rejection rate of non-face crops mined from the held-out part of the CCTV clips."""
    from engines.emotion_model import non_face_probability
    from engines.train.config import NonFaceConfig
    from engines.train.emotion_mix import DEFAULT_YUNET, nonface_sources
    from engines.train.ferplus import default_shared_dir
    from engines.train.nonface import mine_nonfaces

    nf = NonFaceConfig()
    crops = mine_nonfaces(nonface_sources(nf, held_out=True),
                          default_shared_dir() / DEFAULT_YUNET, nf.per_frame_random,
                          nf.per_frame_near, seed=99, out_px=size_px, cache_dir=Path("runs/cache"))
    m = model.manifest
    out: dict[str, Any] = {"threshold": m.non_face_threshold}
    for kind, images in crops.items():
        if len(images) == 0:
            continue
        p = non_face_probability(model.logits(list(images)), m)
        out[kind] = {"n": len(images), "rejected": float((p >= m.non_face_threshold).mean())}
    every = np.concatenate([v for v in crops.values() if len(v)])
    p = non_face_probability(model.logits(list(every)), m)
    out["all"] = {"n": len(every), "rejected": float((p >= m.non_face_threshold).mean())}
    return out


def _argument_problem(args: argparse.Namespace, manifest: ModelManifest,
                      names: Sequence[str]) -> str | None:
    """What is wrong with a combination of arguments argparse cannot see, or None."""
    if args.limit is not None and args.limit < 1:
        return f"--limit: expected >= 1, got {args.limit}"
    if args.degrade != "cctv" and (args.codec != "h264" or args.bitrate_kbps != [1000]):
        return "--codec and --bitrate-kbps apply to --degrade cctv only"
    if args.nonface_heldout and manifest.non_face_class is None:
        return (f"--nonface-heldout: model {manifest.name} has no non-face output "
                f"(classes {list(manifest.class_names)})")
    unknown = sorted({c for c in (args.class_map or {}).values() if c not in names})
    if unknown:
        return f"--class-map: classes {unknown} are not the model's; expected some of {list(names)}"
    if args.class_map and args.data.is_dir():
        folders = {p.name for p in args.data.iterdir() if p.is_dir()}
        missing = sorted(set(args.class_map) - folders)
        if missing:
            return f"--class-map: folders {missing} not found in {args.data}"
    return None


def main(argv: list[str] | None = None) -> int:
    from engines.emotion_model import EmotionModel, emotion_logits, non_face_probability
    from pipeline.errors import ModelError

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="model manifest JSON (or its .onnx)")
    p.add_argument("--data", type=Path, required=True, help="FER+ split folder or ROOT/<class>/")
    p.add_argument("--layout", choices=("auto", "ferplus", "folder"), default="auto")
    p.add_argument("--class-map", type=parse_class_map, default=None,
                   help="folder=class renames for --layout folder, e.g. happy=happiness")
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes("48,32,24,16,12"))
    p.add_argument("--restore", choices=("bilinear", "bicubic", "nearest"), default="bilinear")
    p.add_argument("--degrade", choices=("none", "cctv", "jpeg"), default="none",
                   help="add camera-simulated rows (engines.cctv_sim) to the clean ones")
    p.add_argument("--bitrate-kbps", type=parse_bitrates, default=parse_bitrates("1000"))
    p.add_argument("--codec", choices=("h264", "hevc"), default="h264")
    p.add_argument("--blur-sigma", type=float, default=0.5, help="optical blur, LR px")
    p.add_argument("--noise-sigma", type=float, default=2.0, help="sensor noise, 0-255 units")
    p.add_argument("--jpeg-quality", type=int, default=30)
    p.add_argument("--clip", type=Path, default=None,
                   help="background clip (default $CCTV_SHARED/data/cctv/town_centre_1080p25.mp4)")
    p.add_argument("--nonface-heldout", action="store_true",
                   help="also score non-face crops mined from the clips' held-out frames")
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
    try:
        model = EmotionModel.load(resolve_manifest_path(args.model), args.backend, args.device,
                                  args.threads)
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    m: ModelManifest = model.manifest
    names = model.class_names
    problem = _argument_problem(args, m, names)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.layout != "ferplus" and args.class_map and not (args.data / "label.csv").is_file():
        args.layout = "folder"
    try:
        ds = sample_dataset(load_dataset(args.data, args.layout, image_size=48,
                                         class_names=names, class_map=args.class_map),
                            args.limit, args.seed)
    except DatasetError as err:
        print(f"error: --data: {err}", file=sys.stderr)
        return 2
    if ds.class_names != names:
        print(f"error: --data: expected classes {list(names)}, got {list(ds.class_names)}",
              file=sys.stderr)
        return 2
    conditions = conditions_from_args(args.sizes, args.degrade, args.bitrate_kbps, args.codec,
                                      args.blur_sigma, args.noise_sigma, args.jpeg_quality)
    clip = args.clip
    if args.degrade == "cctv" and clip is None:
        from engines.train.emotion_mix import default_clip

        clip = default_clip()
    raw = condition_logits(model.engine.infer, ds, m, conditions, args.restore, clip, args.seed)
    rows = []
    png_dir = args.png_dir or args.json.parent
    for cond in conditions:
        lg = raw[cond.name]
        row = {"name": cond.name, **cond.describe(), "restore": args.restore,
               **condition_row(emotion_logits(lg, m), ds.labels, names, m.temperature,
                               non_face_probability(lg, m), m.non_face_threshold)}
        png = png_dir / f"{args.json.stem}_confusion_{cond.name}_{args.restore}.png"
        confusion_png(np.asarray(row["confusion"]), names, png,
                      f"{m.name} {cond.name} {args.restore} acc {row['accuracy']:.3f}")
        row["confusion_png"] = str(png)
        row["negative_recall"] = row["negative_union"]["recall"]
        row["negative_fpr"] = row["negative_union"]["false_positive_rate_neutral_happiness"]
        rows.append(row)
    out: dict[str, Any] = {
        "model": str(args.model), "model_name": m.name, "onnx_sha256": m.onnx_sha256,
        "data": str(args.data), "n": len(ds), "limit": args.limit, "seed": args.seed,
        "backend": args.backend, "class_names": list(names), "clip": str(clip) if clip else None,
        "temperature": m.temperature, "logit_bias": list(m.logit_bias),
        "non_face_class": m.non_face_class, "non_face_threshold": m.non_face_threshold,
        "rows": rows, "wall_s": None,
        "command": command_line("python -m engines.eval.emotion", argv),
    }
    if args.fit_temperature:
        out["temperature_fit"] = fit_pooled_temperature(
            {k: emotion_logits(v, m) for k, v in raw.items()}, ds.labels)
    if args.nonface_heldout:
        out["non_face_heldout"] = nonface_heldout_row(model)
    out["wall_s"] = time.time() - t0
    write_json(args.json, out)
    print_table([{**r, "negative_recall": r["negative_recall"] or 0.0,
                  "negative_fpr": r["negative_fpr"] or 0.0} for r in rows],
                [("condition", "name", 24, ""), ("accuracy", "accuracy", 8, ".4f"),
                 ("neg_recall", "negative_recall", 10, ".3f"),
                 ("neg_fpr", "negative_fpr", 8, ".3f"), ("ece", "ece", 6, ".3f"),
                 ("n", "n", 6, "")])
    if args.nonface_heldout:
        print("non-face held-out rejection:", {k: v for k, v in out["non_face_heldout"].items()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
