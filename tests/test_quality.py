"""Face quality: a sharp, large, frontal face must outrank blurred, tiny and turned faces."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import DetectorConfig
from pipeline.detect import create_detector
from pipeline.quality import (
    UNKNOWN_FRONTALNESS,
    assess_face,
    face_quality,
    frontal_score,
    sharpness_score,
    size_score,
)
from pipeline.records import Detection


@pytest.fixture(scope="module")
def photo_faces() -> tuple[np.ndarray, list[Detection]]:
    spec = importlib.util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("insightface (which ships t1.jpg) is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "images" / "t1.jpg"
    photo = cv2.imread(str(path))
    detector = create_detector(DetectorConfig(backend="mtcnn", min_face_px=20,
                                              score_threshold=0.7))
    detector.start()
    faces = detector.detect(photo)
    detector.stop()
    assert len(faces) >= 4
    return photo, faces


def test_sharp_large_frontal_face_outranks_blurred_tiny_and_turned(
        photo_faces: tuple[np.ndarray, list[Detection]]) -> None:
    photo, faces = photo_faces
    frontal = max(faces, key=lambda d: frontal_score(d.landmarks_xy))
    turned = min(faces, key=lambda d: frontal_score(d.landmarks_xy))
    assert frontal_score(frontal.landmarks_xy) > 0.8 > 0.3 > frontal_score(turned.landmarks_xy)

    best = assess_face(photo, frontal.bbox_xyxy, frontal.landmarks_xy)
    blurred_photo = cv2.GaussianBlur(photo, (0, 0), 2.5)
    blurred = assess_face(blurred_photo, frontal.bbox_xyxy, frontal.landmarks_xy)
    factor = 6.0
    tiny_photo = cv2.resize(photo, None, fx=1 / factor, fy=1 / factor,
                            interpolation=cv2.INTER_AREA)
    tiny_box = tuple(v / factor for v in frontal.bbox_xyxy)
    tiny = assess_face(tiny_photo, tiny_box, frontal.landmarks_xy / factor)
    profile = assess_face(photo, turned.bbox_xyxy, turned.landmarks_xy)

    assert best.score > 0.8
    assert best.score > blurred.score + 0.1
    assert best.score > tiny.score + 0.2
    assert best.score > profile.score + 0.2
    # each loser loses on the factor it was made worse in
    assert blurred.sharpness_score < best.sharpness_score - 0.3
    assert tiny.size_score < 0.5 and best.size_score == 1.0
    assert profile.frontal_score < best.frontal_score - 0.5
    for quality in (best, blurred, tiny, profile):
        assert 0.0 <= quality.score <= 1.0
    assert face_quality(photo, frontal.bbox_xyxy, frontal.landmarks_xy) == best.score


def test_frontalness_falls_as_the_nose_moves_towards_an_eye() -> None:
    frontal = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float32)
    scores = []
    for shift in (0, 6, 12, 18, 24):
        turned = frontal.copy()
        turned[2, 0] += shift  # the nose swings towards the right eye as the head turns
        scores.append(frontal_score(turned))
    assert scores[0] == pytest.approx(1.0)
    assert scores == sorted(scores, reverse=True) and scores[-1] < 0.3
    past_the_eye = frontal.copy()
    past_the_eye[2, 0] = 75
    assert frontal_score(past_the_eye) < 0.5
    # in-plane rotation alone does not make a face less frontal
    angle = np.radians(30)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    assert frontal_score(frontal @ rotation.T) == pytest.approx(1.0, abs=1e-5)
    assert frontal_score(None) == UNKNOWN_FRONTALNESS


def test_size_and_sharpness_factors() -> None:
    assert size_score(12) == pytest.approx(0.25)
    assert size_score(48) == size_score(200) == 1.0
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    flat = np.full((64, 64, 3), 90, np.uint8)
    assert sharpness_score(texture) > 0.9
    assert sharpness_score(flat) == 0.0
    assert sharpness_score(cv2.GaussianBlur(texture, (0, 0), 3)) < 0.3
    assert sharpness_score(flat[:0]) == 0.0
