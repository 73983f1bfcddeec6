"""FER+ loader, image-folder loader and CCTV degradations."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from engines.preprocess import InputSpec, faces_to_input
from engines.train.degradations import (
    DegradationParams,
    degrade_to_size,
    downscale,
    jpeg,
    random_degrade,
    restore,
)
from engines.train.ferplus import (
    FERPLUS_CLASSES,
    DatasetError,
    load_dataset,
    load_ferplus,
    parse_label_csv,
    write_ferplus_folder,
)


def _votes(rows: list[list[int]]) -> np.ndarray:
    return np.asarray(rows, dtype=np.int64)


@pytest.fixture()
def tiny_ferplus(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (5, 48, 48), dtype=np.uint8)
    votes = _votes([
        [6, 0, 1, 1, 0, 0, 0, 0, 2, 0],   # neutral
        [0, 0, 0, 0, 0, 0, 0, 0, 3, 7],   # NF majority -> dropped
        [0, 8, 2, 0, 0, 0, 0, 0, 0, 0],   # happiness
        [1, 0, 0, 0, 0, 0, 0, 0, 9, 0],   # unknown majority -> dropped
        [0, 0, 0, 0, 0, 0, 0, 5, 0, 5],   # tie contempt / NF: first index wins -> kept
    ])
    return write_ferplus_folder(tmp_path / "FER2013Tiny", images, votes)


def test_label_csv_parsing(tiny_ferplus: Path) -> None:
    rows = parse_label_csv(tiny_ferplus / "label.csv")
    assert [r.file for r in rows] == [f"fer{i:07d}.png" for i in range(5)]
    assert rows[0].box_xywh == (0, 0, 48, 48)
    assert rows[1].votes == (0, 0, 0, 0, 0, 0, 0, 0, 3, 7)
    assert [r.top_vote for r in rows] == ["neutral", "NF", "happiness", "unknown", "contempt"]


def test_unknown_and_nf_majority_dropped_and_targets(tiny_ferplus: Path) -> None:
    ds = load_ferplus(tiny_ferplus)
    assert ds.class_names == FERPLUS_CLASSES
    assert ds.files == ("fer0000000.png", "fer0000002.png", "fer0000004.png")
    assert ds.labels.tolist() == [0, 1, 7]
    assert ds.images.shape == (3, 48, 48) and ds.images.dtype == np.uint8
    # Vote distribution over the 8 emotions only (unknown / NF votes removed), sums to 1.
    np.testing.assert_allclose(ds.soft_targets[0], [0.75, 0, 0.125, 0.125, 0, 0, 0, 0])
    np.testing.assert_allclose(ds.soft_targets[1], [0, 0.8, 0.2, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(ds.soft_targets.sum(1), 1.0, rtol=1e-6)
    original = cv2.imread(str(tiny_ferplus / "fer0000002.png"), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(ds.images[1], original)


def test_bad_label_csv_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "label.csv").write_text('a.png,"(0, 0, 48, 48)",1,2,3\n')
    with pytest.raises(DatasetError, match=r"label.csv:1: expected 12 columns, got 5"):
        load_ferplus(tmp_path)
    with pytest.raises(DatasetError, match="expected a FER\\+ folder"):
        load_ferplus(tmp_path / "missing")


def test_image_folder_layout(tmp_path: Path) -> None:
    for cls, value in (("anger", 10), ("happiness", 200)):
        (tmp_path / cls).mkdir()
        for i in range(2):
            cv2.imwrite(str(tmp_path / cls / f"{i}.png"), np.full((64, 64), value, np.uint8))
    ds = load_dataset(tmp_path)
    assert ds.class_names == ("anger", "happiness")
    assert ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.images.shape == (4, 48, 48)
    np.testing.assert_array_equal(ds.soft_targets, np.eye(2, dtype=np.float32)[[0, 0, 1, 1]])


def test_degradations_shapes_and_determinism() -> None:
    rng_img = np.random.default_rng(1).integers(0, 255, (48, 48), dtype=np.uint8)
    assert downscale(rng_img, 12).shape == (12, 12)
    assert restore(downscale(rng_img, 12), (48, 48), "bicubic").shape == (48, 48)
    assert jpeg(rng_img, 40).shape == (48, 48)
    with pytest.raises(ValueError, match="expected one of"):
        restore(rng_img, (48, 48), "lanczos")
    params = DegradationParams()
    a = random_degrade(rng_img, np.random.default_rng(5), params)
    b = random_degrade(rng_img, np.random.default_rng(5), params)
    np.testing.assert_array_equal(a, b)
    assert a.shape == rng_img.shape and a.dtype == np.uint8
    # A 12 px face loses detail: it differs from the original but keeps the mean intensity.
    small = degrade_to_size(rng_img, 12, "bilinear")
    assert small.shape == (48, 48)
    assert abs(float(small.mean()) - float(rng_img.mean())) < 3.0
    assert float(np.abs(small.astype(int) - rng_img).mean()) > 10.0
    colour = np.dstack([rng_img] * 3)
    assert random_degrade(colour, np.random.default_rng(0), params, (64, 64)).shape == (64, 64, 3)


def test_faces_to_input_gray_and_colour() -> None:
    spec = InputSpec((48, 48), "gray", (0.5,), (0.25,))
    bgr = np.zeros((64, 64, 3), np.uint8)
    bgr[..., 2] = 255  # pure red in BGR
    x = faces_to_input([bgr, np.full((20, 30), 255, np.uint8)], spec)
    assert x.shape == (2, 1, 48, 48) and x.dtype == np.float32
    red_gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)[0, 0] / 255.0
    np.testing.assert_allclose(x[0], (red_gray - 0.5) / 0.25, atol=1e-5)
    np.testing.assert_allclose(x[1], (1.0 - 0.5) / 0.25, atol=1e-5)
    rgb = faces_to_input([bgr], InputSpec((32, 32), "rgb", (0, 0, 0), (1, 1, 1)))
    assert rgb.shape == (1, 3, 32, 32)
    np.testing.assert_allclose(rgb[0, 0], 1.0)  # R channel first
    with pytest.raises(ValueError, match=r"expected shape \(H, W, 3\) BGR or \(H, W\) gray"):
        faces_to_input([np.zeros((8, 8, 4), np.uint8)], spec)
    with pytest.raises(ValueError, match="expected a uint8 numpy array"):
        faces_to_input([np.zeros((8, 8), np.float32)], spec)
