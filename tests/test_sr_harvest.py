"""Per-camera SR adaptation data: face crops harvested from footage with the pipeline's own
detector and tracker (demo clip made by the test: real faces of 16-32 px)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.train.harvest import harvest_footage, select_crops
from engines.train.sr_config import HarvestConfig
from pipeline.analyze import CropRequest


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.demo_clip import build_demo_clip
    from pipeline.errors import PipelineError

    try:
        return build_demo_clip(tmp_path_factory.mktemp("clip") / "cam7.mp4", seconds=2)
    except PipelineError as err:
        pytest.skip(f"demo clip unavailable: {err}")


def _check_harvest(results: list, out: Path, cfg: HarvestConfig) -> None:
    assert len(results) == 1
    res = results[0]
    assert res.out_dir == out / "cam7" and res.frames == 50
    files = sorted(res.out_dir.glob("t*_f*_q*.png"))
    assert len(files) == res.crops >= 5
    per_track: dict[str, int] = {}
    for f in files:
        img = cv2.imread(str(f), cv2.IMREAD_COLOR)
        # aligned crops at the faces' native resolution, never upsampled
        assert img is not None and img.shape[0] == img.shape[1]
        assert 8 <= img.shape[0] <= cfg.max_crop_px
        assert img.std() > 5  # a face, not a flat patch
        per_track[f.name.split("_")[0]] = per_track.get(f.name.split("_")[0], 0) + 1
    assert max(per_track.values()) <= cfg.crops_per_track
    meta = json.loads((res.out_dir / "harvest.json").read_text())
    assert meta["crops"] == res.crops and meta["tracks"] == len(per_track)


def test_harvest_demo_clip_with_default_detector(demo_clip: Path, tmp_path: Path) -> None:
    cfg = HarvestConfig()  # mtcnn: works on any fresh machine
    _check_harvest(harvest_footage(demo_clip, tmp_path / "harvest", cfg), tmp_path / "harvest",
                   cfg)


def test_harvest_demo_clip_with_yunet(demo_clip: Path, tmp_path: Path,
                                      yunet_model: Path) -> None:
    cfg = HarvestConfig(detector="yunet", detector_model=yunet_model)
    _check_harvest(harvest_footage(demo_clip.parent, tmp_path / "h", cfg), tmp_path / "h", cfg)


def _request(track: int, frame: int, quality: float, value: int) -> CropRequest:
    crop = np.full((24, 24, 3), value, np.uint8)
    crop[8:12, 4:20] = 255 - value
    return CropRequest(camera_id="c", track_id=track, frame_index=frame, ts_ms=frame * 40.0,
                       wall_ts_s=0.0, bbox_xyxy=(0, 0, 20, 20), face_size_px=20.0,
                       quality=quality, crop_lr_bgr=crop)


def test_select_crops_keeps_best_per_track_and_drops_duplicates() -> None:
    cands = [_request(1, 0, 0.5, 100), _request(1, 5, 0.9, 100),  # same face twice
             _request(1, 9, 0.7, 30), _request(1, 12, 0.2, 200),
             _request(2, 3, 0.4, 60)]
    kept = select_crops(cands, per_track=2, dedup_threshold=4.0)
    assert [(c.track_id, c.frame_index) for c in kept] == [(1, 5), (1, 9), (2, 3)]
