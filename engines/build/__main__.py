"""Export and build model artifacts (explicit commands; nothing is built on first use).

    python -m engines.build emotion --checkpoint runs/emotion/emotion_resnet/best.pt \
        --out engines/weights/emotion_resnet --calib-data ../shared/data/ferplus/FER2013Valid
    python -m engines.build sr --checkpoint runs/sr/sr_generator/last.pt \
        --out engines/weights/sr_generator --input-size 24
    python -m engines.build tensorrt --manifest engines/weights/emotion_resnet.json \
        [--cache-dir runs/trt_cache] [--max-batch 64] [--fp32]

Subcommands are registered in ``SUBCOMMANDS`` so a later ``sr`` builder plugs in the same way.
"""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import PipelineError


def _sizes(text: str) -> tuple[int, ...]:
    return tuple(int(s) for s in text.split(",") if s.strip())


def _add_emotion(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("emotion", help="export the emotion ResNet to ONNX + manifest")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="output path without extension")
    p.add_argument("--calib-data", type=Path, default=None,
                   help="FER+ split for metrics and temperature fit (FER2013Valid)")
    p.add_argument("--eval-sizes", type=_sizes, default=(48, 32, 24, 16, 12))
    p.add_argument("--calib-sizes", type=_sizes, default=(48, 32, 24, 16, 12))
    p.add_argument("--restore", default="bilinear")
    p.add_argument("--tta-hflip", action="store_true",
                   help="average the logits of each face and its mirror image (2x compute)")
    p.add_argument("--cctv", type=_cctv_points, default=(),
                   help="camera-simulated calibration points SIZE:KBPS,... e.g. 16:1000,24:1000")
    p.add_argument("--negative-max-fpr", type=float, default=None,
                   help="fit the negative-emotion logit adjustment at the first --cctv point so "
                        "that neutral+happiness faces are called negative at most this often")
    p.add_argument("--clip", type=Path, default=None,
                   help="background clip for --cctv (default $CCTV_SHARED/data/cctv/"
                        "town_centre_1080p25.mp4)")
    p.add_argument("--non-face-max-reject", type=float, default=0.01,
                   help="share of calibration faces the non-face threshold may reject")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=_run_emotion)


def _cctv_points(text: str) -> tuple[tuple[int, float], ...]:
    try:
        pts = tuple((int(a), float(b)) for a, b in (p.split(":") for p in text.split(",") if p))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--cctv: expected SIZE:KBPS,..., got {text!r}") from err
    return pts


def _run_emotion(args: argparse.Namespace, command: str) -> int:
    from engines.build.emotion import build_emotion

    m = build_emotion(args.checkpoint, args.out, args.calib_data, args.eval_sizes,
                      args.calib_sizes, args.restore, args.threads, command,
                      tta_hflip=args.tta_hflip, cctv_points=args.cctv,
                      negative_max_fpr=args.negative_max_fpr,
                      non_face_max_reject=args.non_face_max_reject, clip=args.clip)
    print(f"{m.manifest_path}: onnx sha256 {m.onnx_sha256[:12]} temperature {m.temperature:.4f}"
          f" logit bias {list(m.logit_bias)} non-face threshold {m.non_face_threshold:.4f}")
    for row in m.metrics.get("accuracy_by_condition", []):
        neg = row["negative_union"]
        print(f"  {row['name']:>22} {row['restore']}: accuracy {row['accuracy']:.4f} "
              f"ece {row['ece']:.4f} negative recall {neg['recall'] or 0:.3f} "
              f"fpr {neg['false_positive_rate_neutral_happiness'] or 0:.3f} (n={row['n']})")
    return 0


def _add_sr(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sr", help="export the face SR generator to ONNX + manifest")
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None, help="output path without extension")
    p.add_argument("--manifest", type=Path, default=None,
                   help="instead of exporting: record --metrics-json in this built manifest")
    p.add_argument("--input-size", type=int, default=24,
                   help="square input size the pipeline feeds (output = size x scale)")
    p.add_argument("--metrics-json", type=Path, action="append", default=[],
                   help="evaluation JSON to record in the manifest (repeatable)")
    p.add_argument("--threads", type=int, default=2)
    p.set_defaults(func=_run_sr)


def _run_sr(args: argparse.Namespace, command: str) -> int:
    from engines.build.sr import attach_metrics, build_sr

    if args.manifest is not None:
        m = attach_metrics(args.manifest, args.metrics_json)
        print(f"{m.manifest_path}: metrics {sorted(m.metrics)}")
        return 0
    if args.checkpoint is None or args.out is None:
        raise PipelineError("sr: expected --checkpoint and --out (or --manifest), got neither")
    m = build_sr(args.checkpoint, args.out, args.input_size, args.metrics_json, command,
                 threads=args.threads)
    print(f"{m.manifest_path}: onnx sha256 {m.onnx_sha256[:12]} x{m.scale_factor} "
          f"{list(m.input_size_hw)} {m.color} parity {m.metrics['parity_max_abs_diff_unit']:.2e}")
    return 0


def _add_tensorrt(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tensorrt", help="build a TensorRT plan from an ONNX manifest")
    p.add_argument("--manifest", type=Path, required=True)
    p.add_argument("--cache-dir", type=Path, default=Path("runs/trt_cache"))
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--opt-batch", type=int, default=32)
    p.add_argument("--fp32", action="store_true", help="disable FP16 kernels")
    p.set_defaults(func=_run_tensorrt)


def _run_tensorrt(args: argparse.Namespace, command: str) -> int:
    from engines.manifest import load_manifest
    from engines.runtime.tensorrt_backend import build_plan

    m = load_manifest(args.manifest)
    path = build_plan(m, args.cache_dir, args.device, args.max_batch, args.opt_batch,
                      fp16=not args.fp32)
    print(f"plan: {path}")
    return 0


SUBCOMMANDS: dict[str, Callable[[argparse._SubParsersAction], None]] = {
    "emotion": _add_emotion,
    "sr": _add_sr,
    "tensorrt": _add_tensorrt,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engines.build", description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS.values():
        add(sub)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    raw = argv if argv is not None else sys.argv[1:]
    command = "python -m engines.build " + " ".join(shlex.quote(a) for a in raw)
    try:
        return args.func(args, command)
    except PipelineError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
