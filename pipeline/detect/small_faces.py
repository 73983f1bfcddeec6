"""Small-face rotation: the dearest face sizes are scanned over one band of the frame per pass.

Why: a detector pays most for its smallest faces. MTCNN with ``min_face_px`` 12 spends 75 % of
P-Net's pixels on the two pyramid levels for faces under 23.9 px (scales 1 and 0.71 of the
frame, against 0.25 for every larger size together). Faces are tracked between passes, so
each pass need not look for *new* small faces everywhere: with ``bands`` = K the frame is cut
into K horizontal bands and pass n scans sizes below the split only in band ``n mod K``
(grown by the split in px of context so a face on the seam is seen whole, and kept by exactly
one band), while sizes from the split up are scanned wherever the planner asks, every pass.
Known small faces (the previous pass's detections and tracked faces) are scanned at their own
size in a window around them every pass, so their tracks are extended as before. A new small
face is found at most K - 1 passes late (0.4 s at 5 passes/s and K = 3), usually sooner:
MTCNN's coarser levels see a small face's head and shoulders and O-Net, which reads the full
resolution, places the face.

The split is the detector's (:attr:`~pipeline.detect.base.Detector.small_face_split_px`):
MTCNN two pyramid levels up; YuNet / SCRFD where a region is read at half resolution. On by
default only for MTCNN (:attr:`~pipeline.detect.base.Detector.rotates_small_faces`): on Town
Centre YuNet found fewer borderline faces in the small windows and half-resolution scans
(docs/RESULTS.md "Live capacity").

This is the temporal half of "scan what the scene needs" (issue 14): the face-size prior
(pipeline/detect/size_prior.py) removes sizes a region never shows; this spreads the sizes it
does show over passes. ``ScanPlanner`` applies it to every pass but the size prior's periodic
full scan, which stays complete. The motion gate's periodic full frame (every 2 s) takes the
bands in turn on its own count, so a small face too still for the gate to see is found
within ``bands`` of them (6 s; 2 s without rotation). Keeping that pass complete was tried:
it costs 12 % of live throughput (2 MTCNN cameras fell from 4.77 to 4.2 analysed fps).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pipeline.config import SmallFaceScanConfig
from pipeline.detect.base import Detector
from pipeline.detect.geometry import bounding_rect, merge_overlapping
from pipeline.detect.scan import FaceSizeRange, Rect, ScanRegion, clip_rect

# the sizes either side of the split stop this factor short of it, so no MTCNN level (whose
# face size is the split) is scanned by both
_SPLIT_GAP = 1.001
# a known face is re-scanned from this fraction to this multiple of its size
_KNOWN_FACE_SIZE_RATIO = 1.5
# around a known face: this many face sizes of context each side, at least the minimum below
# (a walker crosses about 1.8 face widths between passes at 5 passes/s)
_KNOWN_FACE_CONTEXT_SIZES = 2.0
_KNOWN_FACE_CONTEXT_MIN_PX = 32.0


def band_rows(band: int, bands: int, height: int) -> tuple[int, int]:
    """Rows ``[y1, y2)`` of band ``band`` of ``bands`` equal horizontal bands of a frame
    ``height`` px high (integer edges; the bands tile the frame)."""
    return (band * height) // bands, ((band + 1) * height) // bands


class SmallFaceRotation:
    """One per camera (not thread-safe); :meth:`apply` once per detection pass, in order."""

    def __init__(self, cfg: SmallFaceScanConfig, min_face_px: float,
                 default_split_px: float, min_window_px: int = 48,
                 default_enabled: bool = True) -> None:
        """``default_split_px``: the split when ``cfg.below_px`` is None, the detector's
        :attr:`~pipeline.detect.base.Detector.small_face_split_px`; ``min_window_px``: the
        smallest window around a known face, the detector's
        :attr:`~pipeline.detect.base.Detector.min_region_px`; ``default_enabled``: whether
        it is on when ``cfg.enabled`` is None (the detector's
        :attr:`~pipeline.detect.base.Detector.rotates_small_faces`)."""
        self.cfg = cfg
        self.enabled = default_enabled if cfg.enabled is None else cfg.enabled
        self._min_window_px = int(min_window_px)
        self._min_face_px = float(min_face_px)
        self.split_px = float(cfg.below_px if cfg.below_px is not None else default_split_px)
        self._pass = 0
        self._refresh = 0

    @classmethod
    def for_detector(cls, cfg: SmallFaceScanConfig, detector: Detector) -> SmallFaceRotation:
        """The rotation ``cfg`` asks for, with ``detector``'s split, window and default."""
        return cls(cfg, detector.cfg.min_face_px, detector.small_face_split_px,
                   detector.min_region_px, detector.rotates_small_faces)

    @property
    def active(self) -> bool:
        """Off when disabled, with one band, or when no size is below the split."""
        return self.enabled and self.cfg.bands > 1 and self.split_px > self._min_face_px

    def apply(self, regions: Sequence[ScanRegion], width: int, height: int,
              face_boxes_xyxy: Sequence[Sequence[float]] = (),
              refresh: bool = False) -> list[ScanRegion]:
        """This pass's regions: each region's sizes from the split up over its rectangle,
        its smaller sizes only over this pass's band, plus a window at their own size around
        every known face smaller than the split (``face_boxes_xyxy``, frame pixels).
        ``refresh``: the motion gate's periodic full frame, whose bands advance on their own
        count (so ``bands`` of them cover the frame whatever the passes between). Returns
        ``regions`` unchanged when :attr:`active` is False. Advances the band."""
        if not self.active:
            return list(regions)
        if refresh:
            band = self._refresh % self.cfg.bands
            self._refresh += 1
        else:
            band = self._pass % self.cfg.bands
            self._pass += 1
        y1, y2 = band_rows(band, self.cfg.bands, height)
        split = self.split_px
        out: list[ScanRegion] = []
        small_parts: list[ScanRegion] = []
        for region in regions:
            sizes = region.sizes
            if sizes.min_px >= split:
                out.append(region)
                continue
            if sizes.max_px > split * _SPLIT_GAP:
                # just above the split: MTCNN's split is a pyramid level's own face size, so
                # the level below stays out of the every-pass sizes
                out.append(ScanRegion(region.rect_xyxy,
                                      FaceSizeRange(split * _SPLIT_GAP, sizes.max_px),
                                      region.keep_xyxy))
            high = max(min(sizes.max_px, split / _SPLIT_GAP), sizes.min_px)
            small_parts.append(ScanRegion(region.rect_xyxy, FaceSizeRange(sizes.min_px, high),
                                          region.keep_xyxy))
        out += [part for part in (self._in_band(r, (y1, y2), split, width, height)
                                  for r in small_parts) if part is not None]
        out += self.known_face_regions(face_boxes_xyxy, width, height)
        return out

    def _in_band(self, region: ScanRegion, rows: tuple[int, int], split: float,
                 width: int, height: int) -> ScanRegion | None:
        """The small-size ``region``'s part of the band: the band grown by ``split`` px of
        context, faces kept only when centred in the band itself."""
        keep = region.keep_xyxy or region.rect_xyxy
        keep_in_band = _intersect(keep, (0, rows[0], width, rows[1]))
        if keep_in_band is None:
            return None
        context = math.ceil(split)
        rect = _intersect(region.rect_xyxy, (0, rows[0] - context, width, rows[1] + context))
        if rect is None:
            return None
        return ScanRegion(rect, region.sizes, keep_in_band)

    def known_face_regions(self, face_boxes_xyxy: Sequence[Sequence[float]], width: int,
                           height: int) -> list[ScanRegion]:
        """A window around each known face smaller than the split (its size
        ``/ 1.5 .. * 1.5``, at least ``min_face_px``; two face sizes of context each side, at
        least 32 px, and at least ``min_window_px`` wide and high), so a tracked small face is
        looked for every pass. Overlapping windows merge into one (their sizes joined), so a
        group of faces costs one network call."""
        regions = []
        for box in face_boxes_xyxy:
            x1, y1, x2, y2 = (float(v) for v in box)
            size = max(x2 - x1, y2 - y1)
            low = max(size / _KNOWN_FACE_SIZE_RATIO, self._min_face_px)
            if low >= self.split_px:
                continue
            grow_x = max(size * _KNOWN_FACE_CONTEXT_SIZES, _KNOWN_FACE_CONTEXT_MIN_PX,
                         (self._min_window_px - (x2 - x1)) / 2)
            grow_y = max(size * _KNOWN_FACE_CONTEXT_SIZES, _KNOWN_FACE_CONTEXT_MIN_PX,
                         (self._min_window_px - (y2 - y1)) / 2)
            rect = clip_rect((math.floor(x1 - grow_x), math.floor(y1 - grow_y),
                              math.ceil(x2 + grow_x), math.ceil(y2 + grow_y)), width, height)
            if rect is not None:
                high = max(min(size * _KNOWN_FACE_SIZE_RATIO, self.split_px / _SPLIT_GAP), low)
                regions.append(ScanRegion(rect, FaceSizeRange(low, high)))
        return _merge_overlapping(regions)


def _merge_overlapping(regions: list[ScanRegion]) -> list[ScanRegion]:
    """Regions whose rectangles overlap joined into their bounding rectangle with the union
    of their sizes, until none overlap."""
    return merge_overlapping(regions, lambda r: r.rect_xyxy, lambda a, b: ScanRegion(
        bounding_rect(a.rect_xyxy, b.rect_xyxy), a.sizes.union(b.sizes)))


def _intersect(a: Rect, b: Rect) -> Rect | None:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    return (int(x1), int(y1), int(x2), int(y2)) if x2 > x1 and y2 > y1 else None
