"""Replay throughput on one clip, all measured in one run so the ratios are comparable.

    python benchmarks/replay_throughput.py --input CLIP --json OUT [--config CONFIG]
        [--repeat N]

Measures decode-only fps (PyAV decoding every frame, no colour conversion: the pipeline
converts only the frames it analyses), decode + BGR conversion of every frame (what
"decode-only" meant before 2026-12-01), whole-pipeline fps with detection on every frame, and with
detection on every 5th frame (tracking in between: a live 25 fps camera analysed at 5 fps),
the ratios to decode-only, per-stage milliseconds and peak memory (max RSS). Prints a
markdown table and writes JSON. Each mode decodes the file itself, as the pipeline does, and
publishes to a private embedded Redis.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline.config import load_config  # noqa: E402
from pipeline.runner import ReplayOptions, run_replay  # noqa: E402
from pipeline.sources import replay_file  # noqa: E402

T = TypeVar("T")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def decode_only_fps(clip: Path, to_bgr: bool = False) -> tuple[float, int]:
    """Frames per second decoding ``clip`` as replay does; ``to_bgr``: each converted too."""
    start = time.perf_counter()
    frames = 0
    for frame in replay_file(clip):
        if to_bgr:
            frame.image_bgr  # noqa: B018 - the conversion is what is timed
        frames += 1
    return frames / (time.perf_counter() - start), frames


def median_by(items: list[T], key: Callable[[T], float]) -> T:
    """The item whose key is the median (lower median for an even count)."""
    ordered = sorted(items, key=key)
    return ordered[(len(ordered) - 1) // 2]


def pipeline_run(config, clip: Path, analysis_fps: float) -> dict:
    summary = run_replay(config, ReplayOptions(inputs=clip, analysis_fps=analysis_fps))
    return summary.to_json()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", required=True, type=Path)
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "benchmark.yaml")
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds; each mode's median over the rounds is reported")
    args = parser.parse_args()
    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        redis_cfg = config.redis.model_copy(update={"data_dir": Path(tmp) / "redis"})
        config = config.model_copy(update={"redis": redis_cfg})
        src_fps = 25.0
        ungated_detector = config.detector.model_copy(update={
            "motion_gate": config.detector.motion_gate.model_copy(update={"enabled": False})})
        ungated_config = config.model_copy(update={"detector": ungated_detector})
        # Modes alternate within each round, so load from other processes hits them alike;
        # each mode's median over the rounds is reported.
        runs: dict[str, list] = {"decode": [], "decode_bgr": [], "every": [], "fifth": [],
                                 "ungated": []}
        rss = {}
        for _ in range(args.repeat):
            runs["decode"].append(decode_only_fps(args.input))
            rss["decode"] = peak_rss_mb()
            runs["decode_bgr"].append(decode_only_fps(args.input, to_bgr=True))
            runs["every"].append(pipeline_run(config, args.input, 0))
            rss["every_frame"] = peak_rss_mb()
            runs["fifth"].append(pipeline_run(config, args.input, src_fps / 5))
            rss["every_5th"] = peak_rss_mb()
            runs["ungated"].append(pipeline_run(ungated_config, args.input, src_fps / 5))
        decode_fps, frames = median_by(runs["decode"], lambda r: r[0])
        decode_bgr_fps, _ = median_by(runs["decode_bgr"], lambda r: r[0])
        every = median_by(runs["every"], lambda s: s["fps"])
        fifth = median_by(runs["fifth"], lambda s: s["fps"])
        ungated = median_by(runs["ungated"], lambda s: s["fps"])
        rss_decode, rss_every, rss_fifth = rss["decode"], rss["every_frame"], rss["every_5th"]
    result = {
        "input": str(args.input), "frames": frames, "detector": config.detector.backend,
        "rounds": args.repeat,
        "decode_fps_all_rounds": [round(r[0], 1) for r in runs["decode"]],
        "pipeline_fps_every_5th_all_rounds": [r["fps"] for r in runs["fifth"]],
        "machine": f"{platform.node()} {platform.machine()} cpus={__import__('os').cpu_count()}",
        "decode_fps": round(decode_fps, 2),
        "decode_bgr_fps": round(decode_bgr_fps, 2),
        "pipeline_fps_every_frame": every["fps"],
        "pipeline_fps_every_5th": fifth["fps"],
        "ratio_every_frame": round(every["fps"] / decode_fps, 3),
        "ratio_every_5th": round(fifth["fps"] / decode_fps, 3),
        "live_cameras_at_25fps_analysed_5fps": int(fifth["fps"] // 25.0),
        "stage_ms_every_frame": every["stage_ms"], "stage_ms_every_5th": fifth["stage_ms"],
        "faces_detected_every_frame": every["faces_detected"],
        "tracks_every_frame": every["tracks"], "tracks_every_5th": fifth["tracks"],
        "events_every_5th": fifth["events_published"],
        "faces_detected_every_5th": fifth["faces_detected"],
        "pipeline_fps_every_5th_no_motion_gate": ungated["fps"],
        "faces_detected_every_5th_no_motion_gate": ungated["faces_detected"],
        "tracks_every_5th_no_motion_gate": ungated["tracks"],
        "peak_rss_mb": {"decode": round(rss_decode, 1), "every_frame": round(rss_every, 1),
                        "every_5th": round(rss_fifth, 1)},
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    rows = [
        ("decode only", result["decode_fps"], 1.0, ""),
        ("decode + BGR every frame", result["decode_bgr_fps"],
         round(decode_bgr_fps / decode_fps, 3), ""),
        ("pipeline, detect every frame", every["fps"], result["ratio_every_frame"],
         ", ".join(f"{k} {v:.1f}" for k, v in every["stage_ms"].items())),
        ("pipeline, detect every 5th", fifth["fps"], result["ratio_every_5th"],
         ", ".join(f"{k} {v:.1f}" for k, v in fifth["stage_ms"].items())),
        ("same, motion gate off", ungated["fps"], round(ungated["fps"] / decode_fps, 3),
         ", ".join(f"{k} {v:.1f}" for k, v in ungated["stage_ms"].items())),
    ]
    print(f"clip {args.input.name}: {frames} frames, detector {config.detector.backend}")
    print("| mode | fps | ratio to decode | stage ms/call |")
    print("|---|---|---|---|")
    for name, fps, ratio, stages in rows:
        print(f"| {name} | {fps:.1f} | {ratio:.3f} | {stages} |")
    print(f"faces detected / tracks, every 5th: motion gate on {fifth['faces_detected']} / "
          f"{fifth['tracks']}, off {ungated['faces_detected']} / {ungated['tracks']}")
    print(f"peak RSS MB: {result['peak_rss_mb']}; live 25 fps cameras analysed at 5 fps: "
          f"{result['live_cameras_at_25fps_analysed_5fps']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
