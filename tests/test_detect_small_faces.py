"""Small-face rotation: the smallest sizes over one band per pass, known small faces every pass."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.analyze import CameraAnalyzer
from pipeline.config import AppConfig, CameraConfig, DetectorConfig, SmallFaceScanConfig
from pipeline.detect import create_detector
from pipeline.detect.geometry import half_resolution_face_px, region_input_scale
from pipeline.detect.mtcnn import MtcnnDetector
from pipeline.detect.planner import ScanPlanner
from pipeline.detect.scan import FaceSizeRange, ScanRegion
from pipeline.detect.small_faces import SmallFaceRotation, band_rows
from pipeline.metrics import RunMetrics
from pipeline.records import Frame
from tests.test_detect_size_prior import _face_patches, _paste

WIDTH, HEIGHT = 640, 480


def test_bands_tile_the_frame_and_each_small_face_centre_is_claimed_once_per_cycle() -> None:
    detector = MtcnnDetector(DetectorConfig(min_face_px=12))
    split = detector.small_face_split_px
    assert split == pytest.approx(12 / 0.709 ** 2)
    rotation = SmallFaceRotation(SmallFaceScanConfig(bands=3), 12, split)
    full = [ScanRegion((0, 0, 1920, 1080), FaceSizeRange(12))]
    claims = np.zeros((1080, 1920), np.int32)
    every_level = detector.pyramid_scales(1080, 1920)
    unrotated = detector.input_pixels(1080, 1920, FaceSizeRange(12))
    for _ in range(3):
        regions = rotation.apply(full, 1920, 1080)
        large = [r for r in regions if r.sizes.min_px >= split]
        small = [r for r in regions if r.sizes.max_px < split]
        assert len(large) == 1 and large[0].rect_xyxy == (0, 0, 1920, 1080)
        assert len(small) == 1 and small[0].sizes.min_px == 12
        # each pyramid level is scanned by exactly one of the two
        large_levels = detector.pyramid_scales(1080, 1920, large[0].sizes)
        small_levels = detector.pyramid_scales(1080, 1920, small[0].sizes)
        assert small_levels == every_level[:2] and large_levels == every_level[2:]
        x1, y1, x2, y2 = small[0].keep_xyxy
        claims[y1:y2, x1:x2] += 1
        # context beyond the band, so a face on the seam is seen whole
        assert small[0].rect_xyxy[1] <= max(0, y1 - 23)
        assert small[0].rect_xyxy[3] >= min(1080, y2 + 23)
        cost = sum(detector.input_pixels(r.height, r.width, r.sizes) for r in regions)
        assert cost < 0.6 * unrotated
    assert claims.min() == 1 and claims.max() == 1
    assert band_rows(2, 3, 1080) == (720, 1080)


def test_yunet_splits_where_regions_are_read_at_half_resolution() -> None:
    assert half_resolution_face_px(10, 10) == 40
    assert half_resolution_face_px(12, 10) == 48
    assert half_resolution_face_px(8, 10) == 40
    assert region_input_scale(1920, 10, 10, 1920, 40) == 0.5


def test_known_small_faces_are_scanned_every_pass_and_large_ones_are_left_alone() -> None:
    rotation = SmallFaceRotation(SmallFaceScanConfig(below_px=24, bands=4), 12, 23.9)
    assert rotation.split_px == 24  # below_px overrides the detector's split
    full = [ScanRegion((0, 0, 1920, 1080), FaceSizeRange(12))]
    small_face, large_face = (900, 1000, 916, 1018), (100, 100, 160, 170)
    for _ in range(4):
        regions = rotation.apply(full, 1920, 1080, [small_face, large_face])
        windows = [r for r in regions if r.rect_xyxy != (0, 0, 1920, 1080)
                   and r.keep_xyxy is None]
        assert len(windows) == 1  # the large face is covered by the every-pass sizes
        (window,) = windows
        x1, y1, x2, y2 = window.rect_xyxy
        assert x1 <= 900 - 36 and y1 <= 1000 - 36 and x2 >= 916 + 36 and y2 >= 1018 + 36
        # 18 px: from 12 (the minimum) to just under the split
        assert window.sizes.min_px == 12 and 23.9 < window.sizes.max_px < 24


def test_sizes_ending_just_above_the_split_do_not_make_an_empty_range() -> None:
    """A known face's window can end anywhere: one ending between the split and the split
    plus its gap is all small sizes (regression: it raised ValueError)."""
    split = 12 / 0.709 ** 2
    rotation = SmallFaceRotation(SmallFaceScanConfig(), 12, split)
    for top in (split, split * 1.0005, split * 1.001, split * 1.002):
        regions = rotation.apply([ScanRegion((0, 0, 640, 480), FaceSizeRange(14, top))],
                                 640, 480)
        assert all(r.sizes.min_px <= r.sizes.max_px for r in regions)


@pytest.mark.parametrize("cfg", [SmallFaceScanConfig(enabled=False),
                                 SmallFaceScanConfig(bands=1),
                                 SmallFaceScanConfig(below_px=12)])
def test_rotation_off_leaves_the_regions_unchanged(cfg: SmallFaceScanConfig) -> None:
    rotation = SmallFaceRotation(cfg, 12, 23.9)
    regions = [ScanRegion((0, 0, 640, 480), FaceSizeRange(12))]
    assert not rotation.active
    assert rotation.apply(regions, 640, 480, [(10, 10, 26, 26)]) == regions


def test_rotation_defaults_to_on_for_mtcnn_and_off_for_yunet(yunet_model: Path) -> None:
    mtcnn = MtcnnDetector(DetectorConfig(min_face_px=12))
    yunet = create_detector(DetectorConfig(backend="yunet", model_path=yunet_model,
                                           min_face_px=10))
    assert mtcnn.rotates_small_faces and not yunet.rotates_small_faces
    assert yunet.small_face_split_px == 40 and yunet.min_region_px == 160
    for detector, on in ((mtcnn, True), (yunet, False)):
        rotation = SmallFaceRotation.for_detector(SmallFaceScanConfig(), detector)
        assert rotation.active is on
        forced = SmallFaceRotation.for_detector(SmallFaceScanConfig(enabled=True), detector)
        assert forced.active


def _small_face_clip(patches: list, count: int, appear_at: int) -> list[Frame]:
    """Frames at 5 fps: a large face walking in the top band from the start, and from frame
    ``appear_at`` a 16 px face in the bottom band, walking right."""
    rng = np.random.default_rng(2)
    background = rng.integers(90, 140, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)
    frames = []
    for i in range(count):
        canvas = background.copy()
        _paste(canvas, patches[0], 150 + 3 * i, 90, 48)
        if i >= appear_at:
            _paste(canvas, patches[1 % len(patches)], 300 + 2 * i, 400, 16)
        frames.append(Frame("cam", i, i * 200.0, canvas))
    return frames


def test_a_new_small_face_is_found_within_the_band_cycle_and_then_every_pass() -> None:
    bands = 3
    config = AppConfig.model_validate({"detector": {
        "backend": "mtcnn", "score_threshold": 0.7, "motion_gate": {"enabled": False},
        "size_prior": {"enabled": False},
        "small_face_scan": {"enabled": True, "bands": bands}}})
    detector = create_detector(config.detector)
    detector.start()
    try:
        patches = _face_patches(detector)
        metrics = RunMetrics()
        analyzer = CameraAnalyzer(CameraConfig(id="cam", url="cam.mp4", analysis_fps=None),
                                  config, detector, metrics)
        appear_at = 4  # pass 4 scans band 1 of 3: the face (band 2) is not looked for yet
        found = []
        for frame in _small_face_clip(patches, 14, appear_at):
            analysis = analyzer.process(frame)
            if any(not f.is_predicted and f.bbox_xyxy[1] > 380 for f in analysis.faces):
                found.append(frame.index)
        assert metrics.total("detect_small_faces_rotated") == 14
        assert found, "the small face was never found"
        assert appear_at < found[0] <= appear_at + bands - 1, found
        assert found == list(range(found[0], 14)), found  # kept every pass from then on
    finally:
        detector.stop()


def test_the_gates_periodic_full_frames_take_the_bands_in_turn() -> None:
    """A small face too still for the motion gate is only scanned at its periodic full
    frames: those cover the bands in turn on their own count, whatever passes lie between."""
    config = AppConfig.model_validate({"detector": {"backend": "mtcnn"}})
    detector = MtcnnDetector(config.detector)
    planner = ScanPlanner(config.detector.motion_gate, config.detector.size_prior, detector,
                          small_cfg=config.detector.small_face_scan)
    rng = np.random.default_rng(0)
    background = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
    plans = []
    for i in range(31):  # 5 passes/s: the gate's full frame every 2 s is every 10th pass
        frame = background.copy()
        frame[200:260, 100 + 10 * (i % 40):160 + 10 * (i % 40)] = 255  # something moving
        plans.append(planner.plan(frame, i * 200.0))
    assert [p.kind for p in plans][:2] == ["full_frame", "motion_gated"]
    assert all(p.rotated for p in plans)
    small_rows = []
    for i in (0, 10, 20, 30):
        assert plans[i].kind == "full_frame"
        (small,) = [r for r in plans[i].regions if r.keep_xyxy is not None]
        small_rows.append((small.keep_xyxy[1], small.keep_xyxy[3]))
    assert small_rows == [band_rows(b, 3, 480) for b in (0, 1, 2, 0)]
