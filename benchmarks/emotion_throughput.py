"""CPU throughput and latency of the shipped emotion model.

    python benchmarks/emotion_throughput.py [--manifest engines/weights/emotion_resnet.json]
        [--backend onnxruntime] [--threads 2] [--batch-sizes 1,8,32] [--json OUT]

For each batch size: faces/s and per-batch latency (p50 / p90 / mean) of ``infer`` on
preprocessed input, and of the full path the pipeline uses (``EmotionModel.predict_proba`` on
64x64 BGR crops: preprocessing + inference + calibrated softmax). Prints a table.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.timing import time_calls  # noqa: E402
from engines.emotion_model import EmotionModel  # noqa: E402
from engines.eval.report import print_table, write_json  # noqa: E402
from engines.preprocess import faces_to_input  # noqa: E402


def run(manifest: Path, backend: str, threads: int, batch_sizes: list[int], min_s: float,
        crop_px: int) -> dict:
    model = EmotionModel.load(manifest, backend=backend, threads=threads)
    rng = np.random.default_rng(0)
    rows = []
    for bs in batch_sizes:
        faces = [rng.integers(0, 255, (crop_px, crop_px, 3), dtype=np.uint8) for _ in range(bs)]
        x = faces_to_input(faces, model.manifest)
        model.warmup(bs)
        for what, fn in (("infer", lambda x=x: model.engine.infer(x)),
                         ("predict_proba", lambda f=faces: model.predict_proba(f))):
            t = time_calls(fn, min_s, 10)
            rows.append({"stage": what, "batch_size": bs, "faces_per_s": bs / float(t.mean()),
                         "latency_ms_p50": 1e3 * float(np.percentile(t, 50)),
                         "latency_ms_p90": 1e3 * float(np.percentile(t, 90)),
                         "latency_ms_mean": 1e3 * float(t.mean()), "iters": len(t)})
    model.close()
    return {"manifest": str(manifest), "onnx_sha256": model.manifest.onnx_sha256,
            "backend": backend, "threads": threads, "crop_px": crop_px,
            "machine": f"{platform.machine()} {len(os.sched_getaffinity(0))} cores",
            "load_avg_1m": os.getloadavg()[0], "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--manifest", type=Path, default=REPO / "engines/weights/emotion_resnet.json")
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-sizes", default="1,8,32")
    p.add_argument("--min-seconds", type=float, default=3.0, help="time per measurement")
    p.add_argument("--crop-px", type=int, default=64, help="side of the BGR crops fed in")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    res = run(args.manifest, args.backend, args.threads,
              [int(b) for b in args.batch_sizes.split(",")], args.min_seconds, args.crop_px)
    print(f"{res['manifest']} backend={res['backend']} threads={res['threads']} "
          f"machine={res['machine']} load={res['load_avg_1m']:.2f}")
    print_table(res["rows"], [("stage", "stage", 14, ""), ("batch", "batch_size", 5, ""),
                              ("faces/s", "faces_per_s", 9, ".1f"),
                              ("p50 ms", "latency_ms_p50", 8, ".2f"),
                              ("p90 ms", "latency_ms_p90", 8, ".2f"),
                              ("iters", "iters", 6, "")])
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
