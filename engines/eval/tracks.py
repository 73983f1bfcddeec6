"""Track-level emotion accuracy: several camera crops of one face, combined.

    python -m engines.eval.tracks --model engines/weights/emotion_resnet.json \
        --data ../shared/data/ferplus/FER2013Valid --sizes 16,24 --bitrate-kbps 1000 \
        --crops 6 --limit 1000 --json runs/eval/tracks.json

A track gives several crops of one face. Here each FER2013Valid face is put through the camera
simulator (:mod:`engines.cctv_sim`) ``--crops`` times with different seeds, so each crop has
its own position in the frame, frame in the GOP, sensor noise and codec damage, as the crops
of one track do. For each way of reading a track, accuracy against the majority vote:

- ``single``: one crop (the first), what a per-crop classifier reaches;
- ``best_confidence``: the crop the classifier is surest about (highest top probability);
- ``best_sharpness``: the crop with the highest variance of the Laplacian (a common focus
  measure, Pech-Pacheco et al. 2000);
- ``smoother``: the pipeline's own :class:`pipeline.smoothing.EmotionSmoother` fed the crops
  one per ``--interval-s`` of stream time (what the published ``smoothed`` state holds at the
  track's last event);
- ``mean_probability`` / ``mean_log_probability``: the arithmetic / geometric mean of the
  crops' probabilities;
- ``mean_probability_k``: the mean over the first k crops, k = 1..crops (how fast it helps);
- ``fused_crop``: multi-frame restoration: the track's low-resolution crops averaged pixel by
  pixel (they are aligned: the pipeline aligns every crop on its landmarks), which averages
  out sensor noise and independent codec damage, then restored once and classified once.

Crops are restored as ``--restore`` says: ``bilinear`` (default), or with ``--sr-model`` the
SR generator as the pipeline runs it (fitted to its 24-px input, x4, area to the model input)
for faces inside ``--sr-band``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.eval.conditions import Condition
from engines.eval.emotion import negative_union, parse_bitrates, parse_sizes, sample_dataset
from engines.eval.report import command_line, print_table, write_json
from engines.train.degradations import restore

log = logging.getLogger("engines.eval.tracks")


def sharpness(crop: np.ndarray) -> float:
    """Variance of the Laplacian of a gray crop: higher is sharper."""
    return float(cv2.Laplacian(crop.astype(np.float32), cv2.CV_32F).var())


def smoothed_probabilities(probs: np.ndarray, class_names: tuple[str, ...],
                           interval_s: float, half_life_s: float = 3.0) -> np.ndarray:
    """(N, K, C) per-crop probabilities -> (N, C) after the pipeline's smoother."""
    from pipeline.config import SmoothingConfig
    from pipeline.records import EmotionResult
    from pipeline.smoothing import EmotionSmoother

    smoother = EmotionSmoother(SmoothingConfig(half_life_s=half_life_s))
    out = np.empty((probs.shape[0], probs.shape[2]), np.float32)
    for i in range(probs.shape[0]):
        state = None
        for k in range(probs.shape[1]):
            state = smoother.update("eval", i, k * interval_s * 1000.0, EmotionResult(
                class_names, tuple(float(p) for p in probs[i, k]), sr_applied=False))
        out[i] = state.probabilities
        smoother.end_track("eval", i)
    return out


def fuse_crops(crops: list[list[np.ndarray]]) -> list[np.ndarray]:
    """K lists of N aligned gray crops -> N crops, each the pixel mean of its K crops."""
    return [np.rint(np.mean([per_k[i].astype(np.float32) for per_k in crops], axis=0))
            .astype(np.uint8) for i in range(len(crops[0]))]


def track_rows(probs: np.ndarray, sharp: np.ndarray, labels: np.ndarray,
               class_names: tuple[str, ...], interval_s: float,
               fused: np.ndarray | None = None) -> list[dict[str, Any]]:
    """Accuracy and negative-union recall/FPR of each way to read a track.

    Args:
        probs: (N, K, C) calibrated probabilities of K crops per face.
        sharp: (N, K) sharpness of each crop.
        labels: (N,) majority-vote class indices.
        fused: (N, C) probabilities of the fused crop of each track, if measured.
    """
    n = len(labels)
    idx = np.arange(n)
    picks = {
        "single": probs[:, 0],
        "best_confidence": probs[idx, probs.max(axis=2).argmax(axis=1)],
        "best_sharpness": probs[idx, sharp.argmax(axis=1)],
        "smoother": smoothed_probabilities(probs, class_names, interval_s),
        "mean_probability": probs.mean(axis=1),
        "mean_log_probability": np.log(np.clip(probs, 1e-7, 1.0)).mean(axis=1),
    }
    picks.update({f"mean_probability_{k}": probs[:, :k].mean(axis=1)
                  for k in range(2, probs.shape[1])})
    if fused is not None:
        picks["fused_crop"] = fused
    rows = []
    for method, p in picks.items():
        preds = p.argmax(axis=1)
        neg = negative_union(labels, preds, class_names)
        rows.append({"method": method, "accuracy": float((preds == labels).mean()), "n": n,
                     "negative_recall": neg["recall"] or 0.0,
                     "negative_fpr": neg["false_positive_rate_neutral_happiness"] or 0.0})
    return rows


def main(argv: list[str] | None = None) -> int:
    from engines.emotion_model import EmotionModel
    from engines.eval.emotion import resolve_manifest_path
    from engines.train.emotion_mix import default_clip
    from engines.train.ferplus import load_ferplus

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--data", type=Path, required=True, help="FER+ split folder")
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes("16,24"))
    p.add_argument("--bitrate-kbps", type=parse_bitrates, default=parse_bitrates("1000"))
    p.add_argument("--crops", type=int, default=6, help="crops per track (>= 2)")
    p.add_argument("--interval-s", type=float, default=1.0,
                   help="stream time between a track's analysed crops (select.interval_s)")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--clip", type=Path, default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--sr-model", type=Path, default=None,
                   help="restore crops with this SR generator (manifest or checkpoint)")
    p.add_argument("--sr-band", type=lambda s: tuple(int(v) for v in s.split(",")),
                   default=(12, 32), help="min,max face size that gets SR, px")
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    if args.crops < 2 or args.limit < 1:
        p.error(f"expected --crops >= 2 and --limit >= 1, got {args.crops} and {args.limit}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    t0 = time.time()
    model = EmotionModel.load(resolve_manifest_path(args.model), threads=args.threads)
    ds = sample_dataset(load_ferplus(args.data), args.limit, args.seed)
    clip = args.clip or default_clip()
    hw = tuple(model.input_size_hw)
    sr_fn = None
    if args.sr_model is not None:
        from engines.eval.sr import sr_fn_from_model

        sr_fn, _ = sr_fn_from_model(args.sr_model, args.threads)

    def restore_all(crops: list[np.ndarray], size: int) -> list[np.ndarray]:
        if sr_fn is None or not args.sr_band[0] <= size <= args.sr_band[1]:
            return [restore(c, hw, "bilinear") for c in crops]
        from engines.eval.sr_cctv_emotion import fit_for_sr, sr_input_px

        return [cv2.resize(u, hw[::-1], interpolation=cv2.INTER_AREA)
                for u in sr_fn(fit_for_sr(crops, sr_input_px(args.sr_model)))]

    rows = []
    for size in args.sizes:
        for kbps in args.bitrate_kbps:
            condition = Condition("cctv", size, float(kbps))
            crops = [condition.degrade(ds.images, clip, seed=args.seed * 1000 + k)
                     for k in range(args.crops)]
            probs = np.stack([model.predict(restore_all(per_k, size)).probabilities
                              for per_k in crops], axis=1)
            fused = model.predict(restore_all(fuse_crops(crops), size)).probabilities
            sharp = np.asarray([[sharpness(crops[k][i]) for k in range(args.crops)]
                                for i in range(len(ds))])
            for row in track_rows(probs, sharp, ds.labels, model.class_names, args.interval_s,
                                  fused):
                rows.append({"condition": condition.name, **row})
            log.info("%d px, %d kbps done (%.0f s)", size, kbps, time.time() - t0)
    out = {"model": str(args.model), "onnx_sha256": model.manifest.onnx_sha256,
           "restore": "bilinear" if sr_fn is None else f"sr {args.sr_model} band {args.sr_band}",
           "data": str(args.data), "n": len(ds), "crops_per_track": args.crops,
           "interval_s": args.interval_s, "seed": args.seed, "clip": str(clip), "rows": rows,
           "wall_s": time.time() - t0,
           "command": command_line("python -m engines.eval.tracks", argv)}
    write_json(args.json, out)
    print_table(rows, [("condition", "condition", 20, ""), ("method", "method", 22, ""),
                       ("accuracy", "accuracy", 8, ".4f"),
                       ("neg_recall", "negative_recall", 10, ".3f"),
                       ("neg_fpr", "negative_fpr", 8, ".3f"), ("n", "n", 5, "")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
