"""Box and polygon helpers shared by the detector backends: NMS, ROI rectangles, scaling.

Boxes are ``(N, 4)`` float arrays of ``x1, y1, x2, y2`` in pixels; polygons are sequences of
``(x, y)`` points in frame pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import cv2
import numpy as np

Polygon = Sequence[tuple[float, float]]
Rect = tuple[int, int, int, int]
T = TypeVar("T")
# a region narrowed by the size prior keeps its smallest face at this many times the
# network's smallest resolvable face
_PRIOR_NATIVE_FACTOR = 2.0


def nms(boxes_xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float,
        use_min_area: bool = False) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    ``use_min_area`` divides the intersection by the smaller box instead of the union, which
    also removes a box nested inside a better one (MTCNN's last step uses it).
    """
    if len(boxes_xyxy) == 0:
        return np.zeros(0, dtype=np.int64)
    x1, y1, x2, y2 = (boxes_xyxy[:, i] for i in range(4))
    areas = np.maximum(x2 - x1, 0.0) * np.maximum(y2 - y1, 0.0)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        best = order[0]
        keep.append(best)
        rest = order[1:]
        inter_w = np.maximum(0.0, np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]))
        inter_h = np.maximum(0.0, np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]))
        inter = inter_w * inter_h
        if use_min_area:
            denom = np.minimum(areas[best], areas[rest])
        else:
            denom = areas[best] + areas[rest] - inter
        overlap = inter / np.maximum(denom, 1e-9)
        order = rest[overlap <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def input_scale(long_side_px: int, min_face_px: float, native_min_face_px: float,
                max_input_side_px: int) -> float:
    """Scale at which to run a detector on an image whose longer side is ``long_side_px``.

    The detector is asked to shrink the image so its longer side fits ``max_input_side_px``,
    but never so far that a face of ``min_face_px`` falls below the smallest face the
    network resolves (``native_min_face_px``), and never above full resolution.
    """
    fit = max_input_side_px / float(long_side_px)
    keep_min_faces = native_min_face_px / float(min_face_px)
    return float(min(1.0, max(fit, keep_min_faces)))


def region_input_scale(long_side_px: int, min_face_px: float, native_min_face_px: float,
                       max_input_side_px: int, region_min_face_px: float) -> float:
    """:func:`input_scale`, lowered further for a region whose smallest expected face
    (``region_min_face_px``, from the size prior) is larger than ``min_face_px``: such a
    region is scanned where that face shrinks to twice ``native_min_face_px`` (at the
    network's own limit recall drops: YuNet finds 78 % of 12 px faces; shrinking the faces
    of Town Centre to 10 px lost half the tracks)."""
    scale = input_scale(long_side_px, min_face_px, native_min_face_px, max_input_side_px)
    if region_min_face_px > min_face_px:
        scale = min(scale, _PRIOR_NATIVE_FACTOR * native_min_face_px / float(region_min_face_px))
    return scale


def half_resolution_face_px(min_face_px: float, native_min_face_px: float) -> float:
    """The smallest face a region must be told to expect (``region_min_face_px``) for
    :func:`region_input_scale` to read it at half the scale of a full scan, a quarter of its
    pixels: ``2 * 2 * max(min_face_px, native_min_face_px)`` (YuNet at ``min_face_px`` 10:
    40 px). The small-face rotation splits sizes there (pipeline/detect/small_faces.py)."""
    return 2.0 * _PRIOR_NATIVE_FACTOR * max(float(min_face_px), float(native_min_face_px))


def roi_rectangles(polygons: Sequence[Polygon], width: int, height: int
                   ) -> list[tuple[int, int, int, int]]:
    """Integer bounding rectangles ``(x1, y1, x2, y2)`` of the polygons, clipped to the image.

    Overlapping rectangles are merged into their union so no pixel is scanned twice and a
    face on the seam between two regions is seen whole.
    """
    rects = []
    for i, polygon in enumerate(polygons):
        pts = np.asarray(polygon, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 3:
            raise ValueError(f"roi polygon {i}: expected at least 3 (x, y) points, got an array "
                             f"of shape {pts.shape}")
        x1 = int(np.clip(np.floor(pts[:, 0].min()), 0, width))
        y1 = int(np.clip(np.floor(pts[:, 1].min()), 0, height))
        x2 = int(np.clip(np.ceil(pts[:, 0].max()), 0, width))
        y2 = int(np.clip(np.ceil(pts[:, 1].max()), 0, height))
        if x2 > x1 and y2 > y1:
            rects.append((x1, y1, x2, y2))
    return merge_overlapping(rects, lambda rect: rect, lambda a, b: bounding_rect(a, b))


def bounding_rect(a: Rect, b: Rect) -> Rect:
    """The smallest rectangle holding both."""
    return (min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]))


def merge_overlapping(items: Sequence[T], rect_of: Callable[[T], Rect],
                      join: Callable[[T, T], T]) -> list[T]:
    """``items`` with every two whose rectangles (``rect_of``) overlap by a positive area
    replaced by ``join`` of them, until none overlap (order kept otherwise)."""
    merged = list(items)
    changed = True
    while changed:
        changed = False
        for i in range(len(merged)):
            for j in range(i + 1, len(merged)):
                a, b = rect_of(merged[i]), rect_of(merged[j])
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    merged[i] = join(merged[i], merged[j])
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


def centres_inside(boxes_xyxy: np.ndarray, polygons: Sequence[Polygon]) -> np.ndarray:
    """Boolean mask: the centre of each box lies inside (or on the edge of) some polygon."""
    inside = np.zeros(len(boxes_xyxy), dtype=bool)
    contours = [np.asarray(p, dtype=np.float32).reshape(-1, 1, 2) for p in polygons]
    for i, box in enumerate(boxes_xyxy):
        centre = (float((box[0] + box[2]) / 2), float((box[1] + box[3]) / 2))
        inside[i] = any(cv2.pointPolygonTest(c, centre, False) >= 0 for c in contours)
    return inside
