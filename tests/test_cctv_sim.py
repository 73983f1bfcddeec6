"""Camera simulator: deterministic per seed, a real codec (bitrate matters), data-set caching."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.cctv_sim import (
    CameraSettings,
    SimRanges,
    SimulatorError,
    blur_and_downscale,
    simulate_dataset,
    simulate_faces,
)
from tests.helpers.media import encode_clip


def synthetic_faces(n: int, seed: int = 0) -> np.ndarray:
    """Gray 48x48 'faces': an oval, two eyes and a mouth whose shape varies, on a gradient."""
    rng = np.random.default_rng(seed)
    faces = np.empty((n, 48, 48), np.uint8)
    for i in range(n):
        img = np.tile(np.linspace(60, 120, 48, dtype=np.float32), (48, 1))
        cv2.ellipse(img, (24, 24), (15, 20), 0, 0, 360, float(rng.integers(150, 210)), -1)
        for ex in (17, 31):
            cv2.circle(img, (ex, 19), 3, 30.0, -1)
        cv2.ellipse(img, (24, 33), (7, int(rng.integers(1, 5))), 0, 0, 180, 40.0, -1)
        faces[i] = np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)
    return faces


@pytest.fixture(scope="module")
def street_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 640x360 textured background with moving blobs (the simulator's 'street')."""
    rng = np.random.default_rng(1)
    base = cv2.GaussianBlur(rng.integers(0, 255, (360, 640, 3), dtype=np.uint8), (0, 0), 3)
    frames = []
    for t in range(30):
        f = base.copy()
        cv2.circle(f, (40 + 15 * t, 180), 30, (200, 180, 160), -1)
        frames.append(f)
    return encode_clip(tmp_path_factory.mktemp("sim") / "street.mp4", frames)


def _mean_error(crops: list[np.ndarray], faces: np.ndarray, size: int, blur: float) -> float:
    ref = [blur_and_downscale(f, size, blur) for f in faces]
    return float(np.mean([np.abs(a.astype(np.float32) - b).mean()
                          for a, b in zip(crops, ref, strict=True)]))


def test_same_seed_same_crops_other_seed_differs(street_clip: Path) -> None:
    faces = synthetic_faces(20)
    settings = CameraSettings(bitrate_kbps=400, faces_per_frame=8, noise_sigma=3.0)
    a = simulate_faces(list(faces), [16] * 20, [0.5] * 20, settings, street_clip, seed=5)
    b = simulate_faces(list(faces), [16] * 20, [0.5] * 20, settings, street_clip, seed=5)
    c = simulate_faces(list(faces), [16] * 20, [0.5] * 20, settings, street_clip, seed=6)
    assert [x.shape for x in a] == [(16, 16)] * 20 and a[0].dtype == np.uint8
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@pytest.mark.parametrize("codec", ["h264", "hevc"])
def test_lower_bitrate_degrades_more(street_clip: Path, codec: str) -> None:
    faces = synthetic_faces(24)
    errors = {}
    for kbps in (500, 8000):
        crops = simulate_faces(list(faces), [16] * 24, [0.5] * 24,
                               CameraSettings(codec=codec, bitrate_kbps=kbps, noise_sigma=1.0,
                                              faces_per_frame=12), street_clip, seed=0)
        errors[kbps] = _mean_error(crops, faces, 16, 0.5)
    # through a real encoder the 16 px face at 0.5 Mbit/s is clearly worse than at 8 Mbit/s
    assert errors[500] > errors[8000] * 1.5, errors
    assert errors[8000] < 12.0, errors


def test_jpeg_path_needs_no_clip_and_quality_matters() -> None:
    faces = synthetic_faces(10)
    low = simulate_faces(list(faces), [24] * 10, [0.0] * 10,
                         CameraSettings(codec="jpeg", jpeg_quality=10, noise_sigma=0), None, 0)
    high = simulate_faces(list(faces), [24] * 10, [0.0] * 10,
                          CameraSettings(codec="jpeg", jpeg_quality=95, noise_sigma=0), None, 0)
    assert _mean_error(low, faces, 24, 0.0) > _mean_error(high, faces, 24, 0.0)


def test_bad_inputs_name_the_problem(street_clip: Path, tmp_path: Path) -> None:
    faces = list(synthetic_faces(2))
    with pytest.raises(SimulatorError, match="expected equal lengths"):
        simulate_faces(faces, [16], [0.5, 0.5], CameraSettings(), street_clip, 0)
    with pytest.raises(SimulatorError, match="sizes_px: expected >= 4"):
        simulate_faces(faces, [16, 3], [0.5, 0.5], CameraSettings(), street_clip, 0)
    with pytest.raises(SimulatorError, match="expected a video file, got none"):
        simulate_faces(faces, [16, 16], [0.5, 0.5], CameraSettings(), tmp_path / "nope.mp4", 0)
    with pytest.raises(SimulatorError, match="codec: expected h264"):
        CameraSettings(codec="vp9")  # type: ignore[arg-type]


def test_dataset_is_identical_for_any_worker_count_and_cached(street_clip: Path,
                                                              tmp_path: Path) -> None:
    faces = synthetic_faces(40)
    ranges = SimRanges(min_size_px=10, max_size_px=32, chunk=16, crop_hw=(240, 320),
                       hevc_prob=0.3, jpeg_prob=0.3)
    one = simulate_dataset(faces, ranges, street_clip, seed=2, workers=1, cache_dir=tmp_path)
    cached = list(tmp_path.glob("cctvsim_*.npz"))
    assert len(cached) == 1
    two = simulate_dataset(faces, ranges, street_clip, seed=2, workers=2)
    again = simulate_dataset(faces, ranges, street_clip, seed=2, workers=1, cache_dir=tmp_path)
    assert len(one) == 40 and one.sizes_px.min() >= 10 and one.sizes_px.max() <= 32
    for other in (two, again):
        assert np.array_equal(one.crops, other.crops)
        assert np.array_equal(one.sizes_px, other.sizes_px)
    assert one.crop(0).shape == (one.sizes_px[0], one.sizes_px[0])
    assert set(one.codec) <= {"h264", "hevc", "jpeg"}
