"""Small-face recall of a detector on real faces composited into real CCTV frames.

    python benchmarks/small_face_recall.py --json OUT [--backend mtcnn] [--min-face-px 12]
        [--sizes 12,16,24,32,48] [--frames 8] [--faces-per-frame 5]
        [--passes K [--small-face-scan default|on|off]]

Faces: the high-resolution London portraits (``$CCTV_SHARED/data/faces_hr/london_neutral``).
Each portrait's face box comes from YuNet on the full-resolution image; the portrait is scaled
so that box is ``size`` px wide (the face width an operator means by "a 12 px face"), blurred
slightly (sigma 0.5 px, optics), and pasted into a frame of the Town Centre clip. A face is
found when a detection overlaps its box with IoU >= 0.3. Prints recall per size, false
positives per frame (detections overlapping no pasted face and no face YuNet finds in the
untouched frame) and seconds per frame, and writes JSON.

With ``--passes K`` it measures what the live pipeline finds instead of one ``detect()`` per
frame: the faces walk (half a face width per pass) through K consecutive analysed frames of
the clip (every 5th frame: 5 passes/s of a 25 fps camera), after one pass of the clip
without them, as when people walk into view; the real per-camera analysis
(``CameraAnalyzer``: motion gate, small-face rotation as ``--small-face-scan`` says, the
detector; not the size prior, which needs minutes) runs on them from a fresh start. Per size
it reports recall on the first pass with the faces, the share found by their 3rd pass (one
cycle of the default 3 bands) and recall over passes 4..K (faces being tracked).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engines.eval.report import command_line, print_table, write_json  # noqa: E402
from engines.train.ferplus import default_shared_dir  # noqa: E402
from pipeline.config import DetectorConfig  # noqa: E402
from pipeline.detect import create_detector  # noqa: E402
from pipeline.track.matching import iou_matrix  # noqa: E402


def portrait_faces(folder: Path, yunet: Path, limit: int) -> list[tuple[np.ndarray, tuple]]:
    """(portrait BGR, face box xyxy) for each portrait where YuNet finds one face."""
    det = cv2.FaceDetectorYN.create(str(yunet), "", (320, 320), 0.6, 0.3, 10)
    out = []
    for path in sorted(folder.glob("*.jpg"))[:limit]:
        img = cv2.imread(str(path))
        if img is None:
            continue
        small = cv2.resize(img, (640, 640), interpolation=cv2.INTER_AREA)
        det.setInputSize((640, 640))
        _, faces = det.detect(small)
        if faces is None or len(faces) != 1:
            continue
        x, y, w, h = (faces[0][:4] * img.shape[1] / 640.0).tolist()
        out.append((img, (x, y, x + w, y + h)))
    return out


def composite(frame: np.ndarray, portrait: np.ndarray, box: tuple, size_px: int,
              xy: tuple[int, int]) -> tuple[float, float, float, float]:
    """Paste the portrait scaled so its face box is ``size_px`` wide; return the pasted box."""
    x1, y1, x2, y2 = box
    scale = size_px / (x2 - x1)
    # crop around the face (head and shoulders) before scaling
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * 1.1
    h, w = portrait.shape[:2]
    c = portrait[int(max(0, cy - half)):int(min(h, cy + half)),
                 int(max(0, cx - half)):int(min(w, cx + half))]
    oy, ox = max(0, cy - half), max(0, cx - half)
    blurred = cv2.GaussianBlur(c, (0, 0), sigmaX=0.5 / scale)
    small = cv2.resize(blurred, (max(1, round(c.shape[1] * scale)),
                                 max(1, round(c.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    px, py = xy
    sh, sw = small.shape[:2]
    frame[py:py + sh, px:px + sw] = small
    return (px + (x1 - ox) * scale, py + (y1 - oy) * scale,
            px + (x2 - ox) * scale, py + (y2 - oy) * scale)


def sequence_main(args: argparse.Namespace, argv: list[str] | None, faces: list,
                  yunet: Path, shared: Path, sizes: list[int]) -> int:
    """``--passes``: faces walking through consecutive analysed frames, the live analysis."""
    import av

    from pipeline.analyze import CameraAnalyzer
    from pipeline.config import AppConfig, CameraConfig
    from pipeline.metrics import RunMetrics
    from pipeline.records import Frame

    stride = 5
    with av.open(str(shared / "cctv/town_centre_1080p25.mp4")) as c:
        clip = [f.to_ndarray(format="bgr24") for i, f in enumerate(c.decode(video=0))
                if i % stride == 0]
    if len(clip) < args.passes + 1:
        raise SystemExit(f"--passes: the clip has {len(clip)} analysed frames")
    starts = list(range(0, len(clip) - args.passes, 2))[:args.frames]
    enabled = {"default": None, "on": True, "off": False}[args.small_face_scan]
    fields: dict = {"backend": args.backend, "threads": args.threads,
                    "small_face_scan": {"enabled": enabled},
                    "size_prior": {"enabled": False}}
    if args.backend == "yunet":
        fields["model_path"] = str(yunet)
    if args.min_face_px is not None:
        fields["min_face_px"] = args.min_face_px
    config = AppConfig.model_validate({"detector": fields})
    detector = create_detector(config.detector)
    detector.start()
    rng = np.random.default_rng(args.seed)
    rows, seconds, n_passes = [], 0.0, 0
    for size in sizes:
        first = by_three = tracked = tracked_total = total = 0
        for start in starts:
            analyzer = CameraAnalyzer(CameraConfig(id="walk", url="walk.mp4", analysis_fps=None),
                                      config, detector, RunMetrics())
            picks = [(faces[int(rng.integers(len(faces)))],
                      int(rng.integers(50, clip[0].shape[1] - 4 * size - 50 - args.passes * size)),
                      int(rng.integers(50, clip[0].shape[0] - 4 * size - 50)))
                     for _ in range(args.faces_per_frame)]
            seen = np.zeros((args.faces_per_frame, args.passes), bool)
            # pass 0: the scene before the faces walk in (the gate's first full frame)
            analyzer.process(Frame("walk", 0, 0.0, clip[start].copy()))
            for k in range(args.passes):
                canvas = clip[start + 1 + k].copy()
                boxes = [composite(canvas, img, box, size, (x + k * size // 2, y))
                         for (img, box), x, y in picks]
                t0 = time.perf_counter()
                analysis = analyzer.process(Frame("walk", k + 1, (k + 1) * 1000.0 * stride / 25.0,
                                                  canvas))
                seconds += time.perf_counter() - t0
                n_passes += 1
                dets = [d.bbox_xyxy for d in analysis.detections]
                if dets:
                    m = iou_matrix(np.asarray(boxes, np.float32), np.asarray(dets, np.float32))
                    seen[:, k] = m.max(axis=1) >= 0.3
            total += args.faces_per_frame
            first += int(seen[:, 0].sum())
            by_three += int(seen[:, :3].any(axis=1).sum())
            tracked += int(seen[:, 3:].sum())
            tracked_total += seen[:, 3:].size
        rows.append({"size_px": size, "faces": total, "first_pass": first / max(total, 1),
                     "found_by_pass_3": by_three / max(total, 1),
                     "recall_passes_4_on": tracked / max(tracked_total, 1)})
    detector.stop()
    result = {"date": time.strftime("%Y-%m-%d"), "seed": args.seed, "mode": "walking",
              "passes": args.passes, "sequences": len(starts),
              "faces_per_sequence": args.faces_per_frame, "backend": args.backend,
              "min_face_px": config.detector.min_face_px,
              "small_face_scan": args.small_face_scan, "rows": rows,
              "seconds_per_pass": seconds / max(n_passes, 1), "portraits": len(faces),
              "command": command_line("python benchmarks/small_face_recall.py", argv)}
    write_json(args.json, result)
    print_table(rows, [("size_px", "size_px", 7, ""), ("faces", "faces", 6, ""),
                       ("first", "first_pass", 6, ".3f"),
                       ("by_3", "found_by_pass_3", 6, ".3f"),
                       ("4..K", "recall_passes_4_on", 6, ".3f")])
    print(f"{result['seconds_per_pass']:.3f} s/pass")
    return 0


def main(argv: list[str] | None = None) -> int:
    import av

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--backend", default="mtcnn", choices=("mtcnn", "yunet"))
    p.add_argument("--min-face-px", type=float, default=None, help="default: the config's")
    p.add_argument("--sizes", default="12,16,24,32,48")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--faces-per-frame", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--passes", type=int, default=0,
                   help="walk the faces through this many analysed frames (0: one detect())")
    p.add_argument("--small-face-scan", default="default", choices=("default", "on", "off"),
                   help="with --passes: detector.small_face_scan.enabled null / true / false")
    args = p.parse_args(argv)
    shared = default_shared_dir() / "data"
    yunet = shared / "models/face_detection_yunet_2026may.onnx"
    needed = (yunet, shared / "faces_hr/london_neutral", shared / "cctv/town_centre_1080p25.mp4")
    missing = [str(x) for x in needed if not x.exists()]
    if missing:
        p.error(f"shared data not found: {missing} (set CCTV_SHARED)")
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 4:
        p.error(f"--sizes: expected comma-separated face widths >= 4 px, got {args.sizes!r}")
    faces = portrait_faces(shared / "faces_hr/london_neutral", yunet, 60)
    if args.passes:
        return sequence_main(args, argv, faces, yunet, shared, sizes)
    with av.open(str(shared / "cctv/town_centre_1080p25.mp4")) as c:
        frames = [f.to_ndarray(format="bgr24") for i, f in enumerate(c.decode(video=0))
                  if i % 10 == 0][:args.frames]
    fields = {"backend": args.backend, "threads": args.threads}
    if args.backend == "yunet":
        fields["model_path"] = yunet
    if args.min_face_px is not None:
        fields["min_face_px"] = args.min_face_px
    cfg = DetectorConfig.model_validate(fields)
    detector = create_detector(cfg)
    detector.start()
    reference = create_detector(DetectorConfig(backend="yunet", model_path=yunet,
                                               score_threshold=0.3, min_face_px=6))
    reference.start()
    rng = np.random.default_rng(args.seed)
    rows, false_pos, seconds = [], 0, 0.0
    n_frames = 0
    for size in sizes:
        found = total = 0
        for frame in frames:
            canvas = frame.copy()
            real = [d.bbox_xyxy for d in reference.detect(frame)]
            boxes = []
            for _ in range(args.faces_per_frame):
                img, box = faces[int(rng.integers(len(faces)))]
                x = int(rng.integers(50, canvas.shape[1] - 4 * size - 50))
                y = int(rng.integers(50, canvas.shape[0] - 4 * size - 50))
                boxes.append(composite(canvas, img, box, size, (x, y)))
            t0 = time.perf_counter()
            dets = [d.bbox_xyxy for d in detector.detect(canvas)]
            seconds += time.perf_counter() - t0
            n_frames += 1
            total += len(boxes)
            if dets:
                m = iou_matrix(np.asarray(boxes, np.float32), np.asarray(dets, np.float32))
                found += int((m.max(axis=1) >= 0.3).sum())
                known = np.asarray(boxes + real, np.float32)
                false_pos += int((iou_matrix(np.asarray(dets, np.float32), known).max(axis=1)
                                  < 0.1).sum())
        rows.append({"size_px": size, "found": found, "faces": total,
                     "recall": found / max(total, 1)})
    detector.stop()
    reference.stop()
    result = {"date": time.strftime("%Y-%m-%d"), "seed": args.seed, "frames": len(frames),
              "faces_per_frame": args.faces_per_frame,
              "backend": args.backend, "min_face_px": cfg.min_face_px, "rows": rows,
              "false_positives_per_frame": false_pos / max(n_frames, 1),
              "seconds_per_frame": seconds / max(n_frames, 1), "portraits": len(faces),
              "command": command_line("python benchmarks/small_face_recall.py", argv)}
    write_json(args.json, result)
    print_table(rows, [("size_px", "size_px", 7, ""), ("found", "found", 6, ""),
                       ("faces", "faces", 6, ""), ("recall", "recall", 7, ".3f")])
    print(f"false positives/frame {result['false_positives_per_frame']:.2f}, "
          f"{result['seconds_per_frame']:.3f} s/frame")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
