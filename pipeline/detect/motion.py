"""Motion gating: run the face detector only where something moved or a face was last seen.

CCTV frames are mostly static background. Between two detection passes the gate compares
small grayscale copies of the frames, turns changed pixels into rectangles (grown so a face
on top of a moving body is inside), adds the boxes of every face found by the previous pass
and every tracked face, and hands those rectangles to the detector as regions. A face that
stops moving is therefore still scanned where it was last found. (A running-average
background was tried first: on a busy street the people present when it starts stay
"foreground" for minutes, so nearly every pass fell back to the full frame.) A full-frame
pass still runs every
``full_frame_interval_s`` of stream time and whenever motion covers most of the frame, so a
person who walks in and stands still is found at the next refresh.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.config import MotionGateConfig

Rect = tuple[int, int, int, int]


@dataclass(frozen=True)
class GateDecision:
    """``regions_xyxy`` is None for a full-frame pass, else the rectangles to scan;
    ``refresh``: the full-frame pass is the periodic one (or the first), not one asked for
    because motion covers most of the frame."""

    regions_xyxy: list[Rect] | None
    motion_fraction: float
    refresh: bool = False


class MotionGate:
    """One per camera; call :meth:`decide` once per detection pass, in stream order."""

    def __init__(self, cfg: MotionGateConfig) -> None:
        self.cfg = cfg
        self._previous: np.ndarray | None = None
        self._next_full_ts_ms: float | None = None

    def _small_gray(self, image_bgr: np.ndarray) -> tuple[np.ndarray, float]:
        height, width = image_bgr.shape[:2]
        scale = min(1.0, self.cfg.analysis_width_px / float(width))
        small = cv2.resize(image_bgr, (max(1, round(width * scale)), max(1, round(height * scale))),
                           interpolation=cv2.INTER_AREA)
        gray = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        return cv2.GaussianBlur(gray, (5, 5), 0), scale

    def decide(self, image_bgr: np.ndarray, ts_ms: float,
               face_boxes_xyxy: Sequence[Sequence[float]] = ()) -> GateDecision:
        """``face_boxes_xyxy``: faces found by the previous pass and tracked faces; their
        surroundings are always scanned."""
        gray, scale = self._small_gray(image_bgr)
        previous, self._previous = self._previous, gray
        due_full = self._next_full_ts_ms is None or ts_ms >= self._next_full_ts_ms
        if previous is None or previous.shape != gray.shape or due_full:
            self._next_full_ts_ms = ts_ms + self.cfg.full_frame_interval_s * 1000.0
            return GateDecision(None, 1.0, refresh=True)
        changed = (cv2.absdiff(gray, previous) >= self.cfg.pixel_threshold).astype(np.uint8)
        # drop isolated pixels (compression noise), then grow what is left by the margin, at
        # low resolution, so nearby blobs merge into one region instead of many overlapping
        changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
        fraction = float(changed.mean())
        if fraction >= self.cfg.max_motion_fraction:
            return GateDecision(None, fraction)
        height, width = image_bgr.shape[:2]
        grow = max(1, round(self.cfg.margin_px * scale))
        mask = cv2.dilate(changed, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
        count, _labels, stats, _centroids = cv2.connectedComponentsWithStats(mask, connectivity=8)
        blobs = [(x, y, x + w, y + h) for x, y, w, h, area in stats[1:count]
                 if area >= self.cfg.min_blob_px + (2 * grow + 1) ** 2]
        rects = [self._grow((x1 / scale, y1 / scale, x2 / scale, y2 / scale), width, height,
                            with_margin=False) for x1, y1, x2, y2 in blobs]
        rects += [self._grow(tuple(float(v) for v in box), width, height)
                  for box in face_boxes_xyxy]
        covered = np.zeros(gray.shape, dtype=np.uint8)
        for x1, y1, x2, y2 in rects:
            covered[int(y1 * scale):int(np.ceil(y2 * scale)),
                    int(x1 * scale):int(np.ceil(x2 * scale))] = 1
        if covered.mean() >= self.cfg.max_motion_fraction:
            return GateDecision(None, fraction)
        return GateDecision(rects, fraction)

    def _grow(self, box: tuple[float, ...], width: int, height: int,
              with_margin: bool = True) -> Rect:
        """Grow a box by a fixed margin (unless already applied) plus a share of its size,
        clipped to the frame."""
        x1, y1, x2, y2 = box
        margin = self.cfg.margin_px if with_margin else 0.0
        pad_x = margin + self.cfg.margin_fraction * (x2 - x1)
        pad_y = margin + self.cfg.margin_fraction * (y2 - y1)
        # detectors need context around a face: never hand them a tiny crop
        pad_x = max(pad_x, (self.cfg.min_region_px - (x2 - x1)) / 2)
        pad_y = max(pad_y, (self.cfg.min_region_px - (y2 - y1)) / 2)
        return (max(0, int(x1 - pad_x)), max(0, int(y1 - pad_y)),
                min(width, int(np.ceil(x2 + pad_x))), min(height, int(np.ceil(y2 + pad_y))))


def rect_polygons(rects: Sequence[Rect]) -> list[list[tuple[float, float]]]:
    """Rectangles as 4-point polygons, the region form the detectors take."""
    return [[(x1, y1), (x2, y1), (x2, y2), (x1, y2)] for x1, y1, x2, y2 in rects]
