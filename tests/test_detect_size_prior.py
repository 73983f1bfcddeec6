"""The per-camera face-size prior: learning, planning, the periodic full scan, persistence."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.analyze import CameraAnalyzer
from pipeline.config import AppConfig, CameraConfig, DetectorConfig, SizePriorConfig
from pipeline.detect import Detector, create_detector
from pipeline.detect.mtcnn import MtcnnDetector
from pipeline.detect.scan import FaceSizeRange
from pipeline.detect.size_prior import PriorStore, SizePrior
from pipeline.metrics import RunMetrics
from pipeline.records import Frame
from tests.test_detect_backends import group_photo

WIDTH, HEIGHT = 640, 480
# face sizes (px wide) growing down the frame, as a fixed camera looking down at a floor sees
ROWS = ((80, 20), (250, 32), (390, 48))
NEW_FACE = (270, 60, 60)  # (x, y, size): a face much larger than any seen at the top


def _prior_cfg(**overrides: object) -> SizePriorConfig:
    fields = {"grid_cols": 4, "grid_rows": 4, "min_observations": 20,
              "min_cell_observations": 2, "full_scan_interval_s": 2.0, "state_dir": None}
    return SizePriorConfig.model_validate({**fields, **overrides})


def _learnt_prior(cfg: SizePriorConfig) -> SizePrior:
    """Faces whose size grows down a 1920x1080 frame: 16 px at the top, 64 px at the bottom."""
    prior = SizePrior(cfg, min_face_px=12)
    rng = np.random.default_rng(0)
    for _ in range(400):
        y = float(rng.uniform(100, 1060))
        x = float(rng.uniform(20, 1900))
        size = 16 + 48 * (y - 100) / 960
        prior.observe((x - size / 2, y - size / 2, x + size / 2, y + size / 2), (1920, 1080))
    return prior


def test_prior_ranges_follow_the_learnt_sizes_and_cut_pyramid_work() -> None:
    prior = _learnt_prior(_prior_cfg(grid_cols=8, grid_rows=8, min_observations=150))
    assert prior.converged
    cells = prior.cell_sizes()
    top, bottom = cells[0][3], cells[7][3]
    assert top.min_px < 16 and top.max_px < 40
    assert bottom.min_px > 30 and bottom.max_px > 64
    detector = MtcnnDetector(DetectorConfig(min_face_px=12))
    full = detector.input_pixels(1080, 1920, detector.full_sizes)
    regions = prior.plan([(0, 0, 1920, 1080)], detector.input_pixels)
    guided = sum(detector.input_pixels(r.height, r.width, r.sizes) for r in regions)
    assert guided < 0.7 * full
    # the keep rectangles tile the frame: every face centre is claimed by exactly one region
    claims = np.zeros((1080, 1920), np.int32)
    for region in regions:
        x1, y1, x2, y2 = region.keep_xyxy
        claims[y1:y2, x1:x2] += 1
        assert region.keep_xyxy[0] >= region.rect_xyxy[0]
        assert region.keep_xyxy[3] <= region.rect_xyxy[3]
    assert claims.min() == 1 and claims.max() == 1


def test_mtcnn_levels_follow_the_sizes() -> None:
    detector = MtcnnDetector(DetectorConfig(min_face_px=12))
    every = detector.pyramid_scales(1080, 1920)
    large = detector.pyramid_scales(1080, 1920, FaceSizeRange(40, 80))
    small = detector.pyramid_scales(1080, 1920, FaceSizeRange(12, 20))
    assert every[0] == 1.0 and set(large) < set(every) and set(small) < set(every)
    assert all(12 / s <= 80 and 12 / s / 0.709 > 40 for s in large)
    assert small == every[:2]


def test_prior_state_round_trips_and_other_grids_start_afresh(tmp_path: Path) -> None:
    cfg = _prior_cfg(grid_cols=8, grid_rows=8, min_observations=150)
    prior = _learnt_prior(cfg)
    store = PriorStore(tmp_path, "cam-1", save_interval_s=60)
    store.save(prior)
    loaded = PriorStore(tmp_path, "cam-1", 60).load(cfg, 12)
    assert loaded.observations == prior.observations and loaded.frame_wh == (1920, 1080)
    assert loaded.cell_sizes() == prior.cell_sizes()
    other = PriorStore(tmp_path, "cam-1", 60).load(_prior_cfg(grid_cols=4), 12)
    assert other.observations == 0
    (tmp_path / "cam-1.size_prior.json").write_text("{not json")
    assert PriorStore(tmp_path, "cam-1", 60).load(cfg, 12).observations == 0


def _face_patches(detector: Detector) -> list[np.ndarray]:
    """Head-and-shoulders crops of the group photo's faces, with the face box's width
    relative to the crop: (crop, face_fraction)."""
    photo = group_photo()
    pad = 200
    padded = cv2.copyMakeBorder(photo, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    patches = []
    for det in detector.detect(photo):
        x1, y1, x2, y2 = (v + pad for v in det.bbox_xyxy)
        cx, cy, half = int((x1 + x2) / 2), int((y1 + y2) / 2), int(0.9 * (x2 - x1))
        crop = padded[cy - half:cy + half, cx - half:cx + half]
        patches.append((crop, (x2 - x1) / crop.shape[1]))
    return patches


def _paste(canvas: np.ndarray, patch: tuple[np.ndarray, float], x: int, y: int,
           size: int) -> None:
    """Paste a face ``size`` px wide centred at (x, y)."""
    crop, fraction = patch
    side = round(size / fraction)
    small = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    top, left = y - side // 2, x - side // 2
    canvas[top:top + side, left:left + side] = small


def _clip(patches: list, count: int, start: int, new_face: bool) -> list[Frame]:
    """Frames at 5 fps: three rows of faces, sizes growing down the frame, walking right."""
    rng = np.random.default_rng(1)
    background = rng.integers(90, 140, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames = []
    for i in range(start, start + count):
        canvas = background.copy()
        for j, (y, size) in enumerate(ROWS):
            for k in range(2):
                _paste(canvas, patches[(j * 2 + k) % len(patches)], 120 + 300 * k + 2 * i, y,
                       size)
        if new_face:
            x, y, size = NEW_FACE
            _paste(canvas, patches[-1], x + 2 * i, y, size)
        frames.append(Frame("cam", i, i * 200.0, canvas))
    return frames


def test_prior_converges_on_a_clip_and_a_full_scan_finds_a_new_size() -> None:
    config = AppConfig.model_validate({"detector": {
        "backend": "mtcnn", "score_threshold": 0.7, "motion_gate": {"enabled": False},
        "size_prior": _prior_cfg().model_dump()}})
    detector = create_detector(config.detector)
    detector.start()
    metrics = RunMetrics()
    camera = CameraConfig(id="cam", url="cam.mp4", analysis_fps=None)
    analyzer = CameraAnalyzer(camera, config, detector, metrics)
    patches = _face_patches(detector)
    assert len(patches) >= 4
    for frame in _clip(patches, 12, 0, new_face=False):
        analyzer.process(frame)
    prior = analyzer._planner.prior
    assert prior.converged
    cells = prior.cell_sizes()
    assert cells[0][1].max_px < NEW_FACE[2]  # the top row does not expect the new size
    assert cells[3][1].min_px > ROWS[0][1]  # the bottom row does not expect the small one
    guided_before = metrics.total("detect_size_guided")
    assert guided_before > 0  # the last passes were narrowed by the prior

    found, full_scans, cost = [], [], {"full_scan": set(), "guided": set()}
    for frame in _clip(patches, 16, 12, new_face=True):
        scans, pixels = metrics.total("detect_full_scan"), metrics.total("detector_input_px")
        analysis = analyzer.process(frame)
        if metrics.total("detect_full_scan") > scans:
            full_scans.append(frame.index)
        kind = "full_scan" if full_scans and full_scans[-1] == frame.index else "guided"
        cost[kind].add(metrics.total("detector_input_px") - pixels)
        if any(not f.is_predicted and abs((f.bbox_xyxy[1] + f.bbox_xyxy[3]) / 2 - NEW_FACE[1]) < 20
               and f.bbox_xyxy[2] - f.bbox_xyxy[0] > 45 for f in analysis.faces):
            found.append(frame.index)
    # guided passes do not look for it; the periodic full scan finds it, the next pass
    # (its own size is scanned around it) confirms the track, and from then on it is kept
    assert full_scans and full_scans[0] <= 12 + 2.0 * 5, full_scans
    assert found and found[0] == full_scans[0] + 1, (found, full_scans)
    assert found == list(range(found[0], 28)), found
    assert prior.cell_sizes()[0][1].max_px >= NEW_FACE[2]  # learnt
    assert max(cost["guided"]) < 0.6 * min(cost["full_scan"]), cost
    detector.stop()


@pytest.mark.parametrize("bad", [{"grid_cols": 0}, {"size_margin": 0.5}, {"colour": 1}])
def test_size_prior_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        SizePriorConfig.model_validate(bad)
