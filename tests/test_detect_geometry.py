"""NMS, ROI rectangles and polygon gating used by every detector backend."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.detect.geometry import centres_inside, nms, roi_rectangles


def test_nms_keeps_best_of_overlapping_and_separate_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 4, 4]], np.float32)
    scores = np.array([0.8, 0.9, 0.7, 0.95], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [3, 1, 2]
    # by the smaller area, the 4x4 box nested inside the others counts as a duplicate
    assert nms(boxes, scores, 0.5, use_min_area=True).tolist() == [3, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []


def test_roi_rectangles_clip_and_merge_overlaps() -> None:
    a = [(-10.0, 5.0), (30.0, 5.0), (30.0, 40.0)]
    b = [(25.0, 30.0), (60.0, 30.0), (60.0, 70.0), (25.0, 70.0)]
    far = [(80.0, 80.0), (90.0, 80.0), (90.0, 200.0)]
    assert roi_rectangles([a, b, far], width=100, height=100) == [(0, 5, 60, 70), (80, 80, 90, 100)]
    assert roi_rectangles([[(200.0, 200.0), (300.0, 200.0), (300.0, 300.0)]], 100, 100) == []


def test_centres_inside_uses_the_polygon_not_its_rectangle() -> None:
    triangle = [(0.0, 0.0), (100.0, 0.0), (0.0, 100.0)]
    boxes = np.array([[10, 10, 20, 20], [80, 80, 90, 90]], np.float32)
    assert centres_inside(boxes, [triangle]).tolist() == [True, False]


def test_bad_polygon_is_named() -> None:
    with pytest.raises(ValueError, match="roi polygon 1"):
        roi_rectangles([[(0, 0), (1, 0), (0, 1)], [(0, 0), (1, 1)]], 10, 10)
