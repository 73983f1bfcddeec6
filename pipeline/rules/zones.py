"""Zone tests in frame pixels."""

from __future__ import annotations

from collections.abc import Sequence

Polygon = Sequence[tuple[float, float]]


def point_in_polygon(x: float, y: float, polygon: Polygon) -> bool:
    """Even-odd ray casting; points exactly on an edge may fall either way."""
    inside = False
    n = len(polygon)
    for i in range(n):
        x1, y1 = polygon[i]
        x2, y2 = polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y):
            x_cross = x1 + (y - y1) * (x2 - x1) / (y2 - y1)
            if x < x_cross:
                inside = not inside
    return inside


def box_centre(bbox_xyxy: tuple[float, float, float, float]) -> tuple[float, float]:
    return (bbox_xyxy[0] + bbox_xyxy[2]) / 2.0, (bbox_xyxy[1] + bbox_xyxy[3]) / 2.0


def in_any_zone(point: tuple[float, float], zones: Sequence[Polygon]) -> bool:
    """True when there are no zones (whole frame) or the point lies in one of them."""
    return not zones or any(point_in_polygon(point[0], point[1], zone) for zone in zones)
