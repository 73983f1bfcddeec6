"""Detection work and what it finds: one camera's analysis over a looping clip, per variant.

    python benchmarks/detection_work.py --config CONFIG --json OUT [--clip CLIP]
        [--loops 8] [--every 5] [--variants default,no_rotation,...] [--measure-loops 4]

Decodes CLIP (default: the Town Centre 1080p25 clip) once and feeds it ``--loops`` times, as
one continuous stream (timestamps run on across loops, as the looping live benchmark camera
does), through the real per-camera analysis (``pipeline.analyze.CameraAnalyzer``: motion
gate, face-size prior, small-face rotation, detector, tracker), detecting on every
``--every``-th frame, on one thread. Per variant (a named change to CONFIG's detector
section) it reports, over the last ``--measure-loops`` loops (after the prior has learnt):

- detection passes, input megapixels per pass (``Detector.input_pixels``: deterministic) and
  detect milliseconds per pass (wall clock: noisy, compare within one run);
- faces detected, faces under 24 px detected, tracks started;
- for every track of the reference variant (the first), whether the variant tracked the
  same face (similar size, centre within one face size plus two per pass) within 0, 1, 2, 4
  passes of the reference's first sight: how late a new face is found.

Prints a markdown table and writes JSON. Variants: ``full`` (every size over the whole frame
every pass: the reference for what is found), ``default`` (CONFIG as is),
``no_rotation`` / ``rotation`` (``small_face_scan.enabled`` false / true), ``bands2`` /
``bands4`` (rotation on, 2 or 4 bands),
``no_prior`` (``size_prior.enabled: false``), ``no_gate`` (``motion_gate.enabled: false``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engines.train.ferplus import default_shared_dir  # noqa: E402
from pipeline.analyze import CameraAnalyzer  # noqa: E402
from pipeline.config import AppConfig, CameraConfig, load_config  # noqa: E402
from pipeline.detect.factory import create_detector  # noqa: E402
from pipeline.metrics import RunMetrics  # noqa: E402
from pipeline.records import Frame, face_size_of_box  # noqa: E402

VARIANTS: dict[str, dict] = {
    "full": {"motion_gate": {"enabled": False}, "size_prior": {"enabled": False},
             "small_face_scan": {"enabled": False}},
    "default": {},
    "no_rotation": {"small_face_scan": {"enabled": False}},
    "rotation": {"small_face_scan": {"enabled": True}},
    "bands2": {"small_face_scan": {"enabled": True, "bands": 2}},
    "bands4": {"small_face_scan": {"enabled": True, "bands": 4}},
    "no_prior": {"size_prior": {"enabled": False}},
    "no_gate": {"motion_gate": {"enabled": False}},
}
SMALL_FACE_PX = 24.0
LATE_PASSES = (0, 1, 2, 4)


def decode_clip(path: Path) -> tuple[list[np.ndarray], float]:
    """Every frame of ``path`` as BGR ``(H, W, 3)`` uint8, and the frame interval in ms."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = float(stream.average_rate or 25)
        images = [frame.to_ndarray(format="bgr24") for frame in container.decode(stream)]
    if not images:
        raise SystemExit(f"{path}: no frames decoded")
    return images, 1000.0 / rate


def variant_config(base: AppConfig, name: str, analysis_fps: float) -> AppConfig:
    data = base.model_dump(mode="json")
    detector = data["detector"]
    for section, values in VARIANTS[name].items():
        detector[section] = {**detector[section], **values}
    data["detector"]["size_prior"]["state_dir"] = None
    data["cameras"] = [{"id": "bench", "url": "file:///bench.mp4",
                        "analysis_fps": analysis_fps}]
    return AppConfig.model_validate(data)


def same_face(a: tuple[float, ...], b: tuple[float, ...], passes_apart: int) -> bool:
    """``b`` is the face of box ``a`` seen ``passes_apart`` passes later: sizes within 1.5x
    and centres within one face size plus two per pass between them (a walker crosses about
    nine face widths a second, the tracker's own gate: 1.8 per pass at 5 passes/s)."""
    size_a, size_b = face_size_of_box(a), face_size_of_box(b)
    if not 1 / 1.5 <= size_b / size_a <= 1.5:
        return False
    dx = (a[0] + a[2] - b[0] - b[2]) / 2
    dy = (a[1] + a[3] - b[1] - b[3]) / 2
    return (dx * dx + dy * dy) ** 0.5 <= size_a * (1 + 2 * passes_apart)


def run_variant(config: AppConfig, images: list[np.ndarray], interval_ms: float, loops: int,
                measure_from_loop: int) -> dict:
    """One analysis over the looping clip; per pass (measured loops only) the detections."""
    camera: CameraConfig = config.cameras[0]
    detector = create_detector(config.detector)
    detector.start()
    metrics = RunMetrics()
    analyzer = CameraAnalyzer(camera, config, detector, metrics)
    passes: list[list[tuple[float, ...]]] = []
    first_boxes: dict[int, tuple[int, tuple[float, ...]]] = {}
    detect_s, counted = 0.0, {}
    index = 0
    try:
        for loop in range(loops):
            measuring = loop >= measure_from_loop
            if measuring and not counted:
                counted = {k: metrics.total(k) for k in
                           ("detector_runs", "detector_input_px", "faces_detected", "tracks")}
            for image in images:
                frame = Frame(camera_id=camera.id, index=index, ts_ms=index * interval_ms,
                              wall_ts_s=time.time(), image_bgr=image)
                index += 1
                start = time.perf_counter()
                analysis = analyzer.process(frame)
                if not analysis.detected:
                    continue
                if measuring:
                    detect_s += time.perf_counter() - start
                    boxes = [f.bbox_xyxy for f in analysis.faces if not f.is_predicted]
                    passes.append(boxes)
                    for face in analysis.faces:
                        if not face.is_predicted and face.track_id not in first_boxes:
                            first_boxes[face.track_id] = (len(passes) - 1, face.bbox_xyxy)
    finally:
        detector.stop()
    runs = metrics.total("detector_runs") - counted["detector_runs"]
    return {
        "passes": runs,
        "input_mpx_per_pass": round((metrics.total("detector_input_px")
                                     - counted["detector_input_px"]) / max(runs, 1) / 1e6, 3),
        "analyse_ms_per_pass": round(1000 * detect_s / max(runs, 1), 1),
        "faces_detected": metrics.total("faces_detected") - counted["faces_detected"],
        "small_faces_detected": sum(face_size_of_box(b) < SMALL_FACE_PX
                                    for boxes in passes for b in boxes),
        "tracks": metrics.total("tracks") - counted["tracks"],
        "_passes": passes,
        "_first": list(first_boxes.values()),
    }


def lateness(reference: dict, variant: dict) -> dict[str, float]:
    """Share of the reference's new tracks (first tracked face) whose face the variant
    tracked (:func:`same_face`) within k passes, for k in LATE_PASSES."""
    found = {k: 0 for k in LATE_PASSES}
    firsts = reference["_first"]
    for pass_index, box in firsts:
        for k in LATE_PASSES:
            window = variant["_passes"][pass_index:pass_index + k + 1]
            if any(same_face(box, other, apart) for apart, boxes in enumerate(window)
                   for other in boxes):
                found[k] += 1
    return {f"within_{k}": round(found[k] / max(len(firsts), 1), 3) for k in LATE_PASSES}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, type=Path)
    parser.add_argument("--json", required=True, type=Path)
    parser.add_argument("--clip", type=Path,
                        default=default_shared_dir() / "data/cctv/town_centre_1080p25.mp4")
    parser.add_argument("--loops", type=int, default=8)
    parser.add_argument("--measure-loops", type=int, default=4)
    parser.add_argument("--every", type=int, default=5, help="detect on every n-th frame")
    parser.add_argument("--variants", default="full,no_rotation,default",
                        help="comma-separated; the first is the reference for new tracks")
    args = parser.parse_args(argv)
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; expected some of {sorted(VARIANTS)}")
    if not 1 <= args.measure_loops <= args.loops:
        raise SystemExit("--measure-loops: expected 1 <= measure-loops <= loops")
    base = load_config(args.config)
    images, interval_ms = decode_clip(args.clip)
    analysis_fps = 1000.0 / interval_ms / args.every
    results = {}
    for name in names:
        config = variant_config(base, name, analysis_fps)
        results[name] = run_variant(config, images, interval_ms, args.loops,
                                    args.loops - args.measure_loops)
        print(f"{name}: {results[name]['passes']} passes, "
              f"{results[name]['analyse_ms_per_pass']} ms/pass", flush=True)
    reference = results[names[0]]
    for name in names:
        results[name]["new_tracks_found"] = lateness(reference, results[name])
    print(f"\nclip {args.clip.name}, {args.loops} loops (last {args.measure_loops} measured), "
          f"detect every {args.every}th frame, detector {base.detector.backend}; new tracks: "
          f"of the {len(reference['_first'])} the {names[0]} variant starts")
    print("| variant | passes | input Mpx / pass | analyse ms / pass | faces | faces < 24 px "
          "| tracks | new tracks found within 0 / 1 / 2 / 4 passes |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        r = results[name]
        late = " / ".join(f"{r['new_tracks_found'][f'within_{k}']:.2f}" for k in LATE_PASSES)
        print(f"| {name} | {r['passes']} | {r['input_mpx_per_pass']} | "
              f"{r['analyse_ms_per_pass']} | {r['faces_detected']} | "
              f"{r['small_faces_detected']} | {r['tracks']} | {late} |")
    for r in results.values():
        r.pop("_passes")
        r.pop("_first")
    out = {"clip": str(args.clip), "config": str(args.config), "loops": args.loops,
           "measure_loops": args.measure_loops, "every": args.every,
           "detector": base.detector.backend,
           "machine": f"{platform.node()} {platform.machine()} cpus={os.cpu_count()}",
           "date": time.strftime("%Y-%m-%d"), "variants": results}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
