"""CPU throughput of the shipped face SR generator (ONNX Runtime), against bicubic.

    python benchmarks/sr_throughput.py [--manifest engines/weights/sr_generator.json]
        [--threads 1,2] [--batch-sizes 1,32] [--min-s 3] [--json OUT]

For each thread count and batch size: faces/s and per-batch latency of ``Engine.infer`` on
preprocessed input at the manifest size (24x24 -> 96x96 for the shipped model), and of the
full path the enhance stage runs (``engines.sr_io.super_resolve`` on BGR crops of the band's
sizes: fit to the input size, Y/CrCb split, inference, chroma bicubic, merge). A bicubic
row (``cv2.resize`` of the same crops to the output size) gives the baseline cost.
Target (issue 4): >= 100 faces/s for infer at batch 32 on the 2-core dev machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.timing import time_calls  # noqa: E402
from engines.eval.report import command_line, print_table, write_json  # noqa: E402
from engines.manifest import load_manifest  # noqa: E402
from engines.preprocess import faces_to_input  # noqa: E402
from engines.runtime import create_engine_from_manifest  # noqa: E402
from engines.sr_io import fit_to_size, output_size_hw, super_resolve  # noqa: E402


def _row(stage: str, threads: int, bs: int, t: np.ndarray) -> dict:
    return {"stage": stage, "threads": threads, "batch_size": bs,
            "faces_per_s": bs / float(np.median(t)),
            "latency_ms_p50": 1e3 * float(np.percentile(t, 50)),
            "latency_ms_p90": 1e3 * float(np.percentile(t, 90)), "iters": len(t)}


def run(manifest_path: Path, threads_list: list[int], batch_sizes: list[int], min_s: float,
        crop_px: list[int]) -> dict:
    m = load_manifest(manifest_path, expect_task="sr")
    out_h, out_w = output_size_hw(m)
    rng = np.random.default_rng(0)
    rows = []
    for threads in threads_list:
        engine = create_engine_from_manifest(m, "onnxruntime", "cpu", threads)
        for bs in batch_sizes:
            crops = [cv2.GaussianBlur(rng.integers(0, 255, (s, s, 3), dtype=np.uint8), (0, 0), 1)
                     for s in (crop_px[i % len(crop_px)] for i in range(bs))]
            if m.channels == 1:
                planes = [fit_to_size(cv2.cvtColor(c, cv2.COLOR_BGR2GRAY), m.input_size_hw)
                          for c in crops]
            else:
                planes = [fit_to_size(c, m.input_size_hw) for c in crops]
            x = faces_to_input(planes, m)
            engine.warmup(bs)
            rows.append(_row("infer", threads, bs,
                             time_calls(lambda x=x, e=engine: e.infer(x), min_s, 5)))
            rows.append(_row("super_resolve", threads, bs,
                             time_calls(lambda c=crops, e=engine: super_resolve(e, c), min_s, 5)))
            if threads == threads_list[0]:
                rows.append(_row("bicubic", 1, bs, time_calls(
                    lambda c=crops: [cv2.resize(f, (out_w, out_h), interpolation=cv2.INTER_CUBIC)
                                     for f in c], min_s, 5)))
        engine.close()
    return {"manifest": str(manifest_path), "onnx_sha256": m.onnx_sha256,
            "input_size_hw": list(m.input_size_hw), "output_size_hw": [out_h, out_w],
            "color": m.color, "crop_px": crop_px,
            "machine": f"{platform.machine()} {len(os.sched_getaffinity(0))} cores",
            "load_average": list(os.getloadavg()), "rows": rows}


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--manifest", type=Path, default=REPO / "engines/weights/sr_generator.json")
    p.add_argument("--threads", type=_ints, default=[1, 2])
    p.add_argument("--batch-sizes", type=_ints, default=[1, 32])
    p.add_argument("--crop-px", type=_ints, default=[16, 24, 32],
                   help="crop sizes fed to super_resolve (cycled through the batch)")
    p.add_argument("--min-s", type=float, default=3.0, help="seconds per measurement")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    t0 = time.time()
    res = run(args.manifest, args.threads, args.batch_sizes, args.min_s, args.crop_px)
    res["wall_s"] = time.time() - t0
    res["command"] = command_line("python benchmarks/sr_throughput.py", argv)
    print_table(res["rows"], [("stage", "stage", 14, ""), ("threads", "threads", 7, ""),
                              ("batch", "batch_size", 5, ""),
                              ("faces/s", "faces_per_s", 9, ".1f"),
                              ("p50 ms", "latency_ms_p50", 8, ".2f"),
                              ("p90 ms", "latency_ms_p90", 8, ".2f")])
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
