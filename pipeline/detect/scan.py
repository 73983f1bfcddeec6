"""What one detector pass scans: rectangles of the frame, each with the face sizes to look for.

A :class:`ScanRegion` is the unit of detection work: the network sees ``rect_xyxy`` at the
resolution ``sizes`` needs (MTCNN: only the pyramid levels for those sizes; YuNet / SCRFD:
the input scale at which ``sizes.min_px`` is still resolved), and only faces whose box centre
lies in ``keep_xyxy`` are kept, the rest of the rectangle being context for faces that cross
its edge. Rectangles are integer pixels ``(x1, y1, x2, y2)``, end exclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

Rect = tuple[int, int, int, int]


@dataclass(frozen=True)
class FaceSizeRange:
    """Face sizes to resolve, px of the longer box side; ``max_px`` may be ``math.inf``.

    Raises ValueError unless ``0 < min_px <= max_px``."""

    min_px: float
    max_px: float = math.inf

    def __post_init__(self) -> None:
        if not 0 < self.min_px <= self.max_px:
            raise ValueError(f"FaceSizeRange: expected 0 < min_px <= max_px, got "
                             f"[{self.min_px}, {self.max_px}]")

    def union(self, other: FaceSizeRange) -> FaceSizeRange:
        return FaceSizeRange(min(self.min_px, other.min_px), max(self.max_px, other.max_px))


@dataclass(frozen=True)
class ScanRegion:
    """One rectangle to scan for faces of ``sizes``; keep faces centred in ``keep_xyxy``
    (None: anywhere in ``rect_xyxy``)."""

    rect_xyxy: Rect
    sizes: FaceSizeRange
    keep_xyxy: Rect | None = None

    @property
    def width(self) -> int:
        return self.rect_xyxy[2] - self.rect_xyxy[0]

    @property
    def height(self) -> int:
        return self.rect_xyxy[3] - self.rect_xyxy[1]


def clip_rect(rect: Rect, width: int, height: int) -> Rect | None:
    """``rect`` clipped to a ``width`` x ``height`` image, or None when nothing is left."""
    x1, y1 = max(0, int(rect[0])), max(0, int(rect[1]))
    x2, y2 = min(width, int(rect[2])), min(height, int(rect[3]))
    return (x1, y1, x2, y2) if x2 > x1 and y2 > y1 else None


def centres_in_rect(boxes_xyxy: np.ndarray, rect: Rect) -> np.ndarray:
    """Boolean mask ``(N,)``: the centre of each box ``(N, 4)`` lies in ``rect`` (the right
    and bottom edges excluded, so rectangles that tile a frame claim each centre once)."""
    cx = (boxes_xyxy[:, 0] + boxes_xyxy[:, 2]) / 2
    cy = (boxes_xyxy[:, 1] + boxes_xyxy[:, 3]) / 2
    return (cx >= rect[0]) & (cx < rect[2]) & (cy >= rect[1]) & (cy < rect[3])


def full_regions(rects: Sequence[Rect], sizes: FaceSizeRange) -> list[ScanRegion]:
    """Every rectangle at the same sizes, each keeping what it finds (the plain pass)."""
    return [ScanRegion(tuple(int(v) for v in rect), sizes) for rect in rects]
