"""Harvest low-resolution face crops from a camera's recorded footage, for SR adaptation.

The crops come from the product's own per-camera analysis (:class:`pipeline.analyze.
CameraAnalyzer`: the configured detector, the tracker, the per-track best-quality selector
and the aligner), so they are what the enhance stage will see at run time: aligned faces at
their native resolution, never upsampled. Per track the best ``crops_per_track`` crops by
quality are kept, after dropping near-duplicates (mean absolute difference of 16x16
thumbnails below ``dedup_threshold`` grey levels: a person standing still gives the same
face many times).

Output: ``OUT/<camera_id>/t<track>_f<frame>_q<quality>.png`` plus ``OUT/<camera_id>/
harvest.json`` (source, counts, detector settings).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engines.train.sr_config import HarvestConfig
from pipeline.analyze import CameraAnalyzer, CropRequest
from pipeline.config import AppConfig, CameraConfig
from pipeline.detect.factory import create_detector
from pipeline.metrics import RunMetrics
from pipeline.sources.replay import camera_id_for, list_videos, replay_file

log = logging.getLogger("engines.train.harvest")


@dataclass(frozen=True)
class HarvestResult:
    out_dir: Path
    crops: int
    tracks: int
    frames: int
    candidates: int
    wall_s: float


def _thumb(crop_bgr: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY)
    return cv2.resize(gray, (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32)


def select_crops(candidates: list[CropRequest], per_track: int, dedup_threshold: float
                 ) -> list[CropRequest]:
    """Best ``per_track`` crops of each track by quality, skipping near-duplicates."""
    by_track: dict[int, list[CropRequest]] = {}
    for c in candidates:
        by_track.setdefault(c.track_id, []).append(c)
    kept: list[CropRequest] = []
    for track_id in sorted(by_track):
        chosen: list[tuple[CropRequest, np.ndarray]] = []
        for c in sorted(by_track[track_id], key=lambda c: (-c.quality, c.frame_index)):
            thumb = _thumb(c.crop_lr_bgr)
            if any(float(np.abs(thumb - t).mean()) < dedup_threshold for _, t in chosen):
                continue
            chosen.append((c, thumb))
            if len(chosen) >= per_track:
                break
        kept += [c for c, _ in chosen]
    return kept


def _app_config(cfg: HarvestConfig) -> AppConfig:
    detector = {"backend": cfg.detector, "score_threshold": cfg.score_threshold,
                "min_face_px": cfg.min_face_px, "motion_gate": {"enabled": False}}
    if cfg.detector_model is not None:
        detector["model_path"] = str(cfg.detector_model)
    return AppConfig.model_validate({
        "detector": detector,
        "tracker": {"low_score": min(0.5, cfg.score_threshold)},
        "select": {"interval_s": cfg.interval_s, "crop_size_px": cfg.max_crop_px,
                   "min_quality": cfg.min_quality},
    })


def harvest_file(video: Path, out_dir: Path, cfg: HarvestConfig) -> HarvestResult:
    """Run detector + tracker + selector over one video; write the kept crops."""
    t0 = time.time()
    app = _app_config(cfg)
    camera = CameraConfig(id=camera_id_for(video), url=str(video),
                          analysis_fps=cfg.analysis_fps)
    detector = create_detector(app.detector)
    detector.start()
    candidates: list[CropRequest] = []
    frames = 0
    try:
        analyzer = CameraAnalyzer(camera, app, detector, RunMetrics())
        for frame in replay_file(video, camera_id=camera.id):
            candidates += analyzer.process(frame).crops
            frames += 1
            if cfg.max_frames is not None and frames >= cfg.max_frames:
                break
        candidates += analyzer.finish(time.time())[0]
    finally:
        detector.stop()
    kept = select_crops(candidates, cfg.crops_per_track, cfg.dedup_threshold)
    cam_dir = out_dir / camera.id
    cam_dir.mkdir(parents=True, exist_ok=True)
    for old in cam_dir.glob("t*_f*_q*.png"):
        old.unlink()
    for c in kept:
        name = f"t{c.track_id:05d}_f{c.frame_index:06d}_q{c.quality:.3f}.png"
        if not cv2.imwrite(str(cam_dir / name), c.crop_lr_bgr):
            raise OSError(f"cannot write {cam_dir / name}")
    result = HarvestResult(out_dir=cam_dir, crops=len(kept),
                           tracks=len({c.track_id for c in kept}), frames=frames,
                           candidates=len(candidates), wall_s=time.time() - t0)
    sizes = [int(c.crop_lr_bgr.shape[0]) for c in kept]
    (cam_dir / "harvest.json").write_text(json.dumps({
        "source": str(video), "camera_id": camera.id, "frames": frames,
        "candidates": len(candidates), "crops": len(kept), "tracks": result.tracks,
        "crop_px_min_median_max": [min(sizes), int(np.median(sizes)), max(sizes)] if sizes
        else None, "settings": json.loads(cfg.model_dump_json()), "wall_s": result.wall_s,
    }, indent=2) + "\n")
    log.info("harvest %s: %d frames, %d candidate crops, kept %d from %d tracks -> %s (%.1fs)",
             video, frames, len(candidates), len(kept), result.tracks, cam_dir, result.wall_s)
    return result


def harvest_footage(source: Path, out_dir: Path, cfg: HarvestConfig) -> list[HarvestResult]:
    """Harvest every video of ``source`` (a file or a folder) into ``out_dir``, one folder
    per camera (file)."""
    videos = list_videos(source)
    if not videos:
        raise FileNotFoundError(f"{source}: expected a video file or a folder of videos, "
                                f"found none")
    return [harvest_file(v, Path(out_dir), cfg) for v in videos]
