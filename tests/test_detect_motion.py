"""Motion gate: full-frame passes at start and on schedule, regions only where pixels changed
or faces are tracked, full frame when most of the picture moves."""

from __future__ import annotations

import numpy as np

from pipeline.config import MotionGateConfig
from pipeline.detect.motion import MotionGate, rect_polygons


def _frame(square_x: int | None = None, noise_seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(noise_seed)
    image = np.full((360, 640, 3), 90, dtype=np.uint8)
    image += rng.integers(0, 3, size=image.shape, dtype=np.uint8)  # sensor noise below threshold
    if square_x is not None:
        image[100:160, square_x:square_x + 40] = 230
    return image


def test_first_pass_and_refresh_are_full_frame() -> None:
    gate = MotionGate(MotionGateConfig(full_frame_interval_s=2.0))
    assert gate.decide(_frame(), 0.0).regions_xyxy is None
    assert gate.decide(_frame(noise_seed=1), 200.0).regions_xyxy == []
    assert gate.decide(_frame(noise_seed=2), 2000.0).regions_xyxy is None


def test_regions_cover_the_moving_object_only() -> None:
    gate = MotionGate(MotionGateConfig())
    gate.decide(_frame(square_x=100), 0.0)
    regions = gate.decide(_frame(square_x=130, noise_seed=1), 200.0).regions_xyxy
    assert regions, "a moving square must give a region"
    x1 = min(r[0] for r in regions)
    x2 = max(r[2] for r in regions)
    y1 = min(r[1] for r in regions)
    y2 = max(r[3] for r in regions)
    assert x1 <= 100 and x2 >= 170 and y1 <= 100 and y2 >= 160
    area = sum((r[2] - r[0]) * (r[3] - r[1]) for r in regions)
    assert area < 0.2 * 640 * 360, "static background is not scanned"


def test_face_boxes_are_always_scanned_with_context() -> None:
    gate = MotionGate(MotionGateConfig(margin_px=10, margin_fraction=0.0, min_region_px=16))
    gate.decide(_frame(), 0.0)
    regions = gate.decide(_frame(noise_seed=1), 200.0, [(500.0, 50.0, 520.0, 70.0)]).regions_xyxy
    assert regions == [(490, 40, 530, 80)]
    assert rect_polygons(regions) == [[(490, 40), (530, 40), (530, 80), (490, 80)]]
    # by default a small face gets a region of at least min_region_px (160) around it
    wide = MotionGate(MotionGateConfig(margin_px=10, margin_fraction=0.0))
    wide.decide(_frame(), 0.0)
    (x1, y1, x2, y2), = wide.decide(_frame(noise_seed=1), 200.0,
                                    [(300.0, 150.0, 320.0, 170.0)]).regions_xyxy
    assert (x2 - x1, y2 - y1) == (160, 160) and (x1, y1) == (230, 80)


def test_large_motion_falls_back_to_full_frame() -> None:
    gate = MotionGate(MotionGateConfig(max_motion_fraction=0.5))
    gate.decide(_frame(), 0.0)
    bright = _frame()
    bright[:, :400] = 250
    decision = gate.decide(bright, 200.0)
    assert decision.regions_xyxy is None and decision.motion_fraction > 0.5
