"""What one camera's detection pass scans: motion regions, ROI and the face-size prior together.

Per pass, in order: (1) the motion gate (pipeline/detect/motion.py) names the rectangles that
changed plus those around recent faces, or asks for the whole frame (the camera's ROI
rectangles when it has ROI polygons); (2) once the camera's :class:`SizePrior` has converged,
each rectangle is scanned only at the face sizes that occur in its cells; (3) every
``size_prior.full_scan_interval_s`` of stream time a full scan looks for every size in the
whole frame (or ROI), whatever the gate says, so faces of a size the prior does not expect
are found and learnt; around known faces of sizes the prior does not expect, their own
size is scanned too, so their tracks are confirmed and learnt. Until the prior converges
every pass looks for every size, as without it; (4) except in that full scan, the smallest
sizes are scanned over one band of the frame per pass, in turn, and around known small faces
(pipeline/detect/small_faces.py). Faces are learnt from the tracks (:meth:`ScanPlanner.learn`),
one per tracked face per detection pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.config import MotionGateConfig, SizePriorConfig, SmallFaceScanConfig
from pipeline.detect.base import Detector
from pipeline.detect.geometry import Polygon, roi_rectangles
from pipeline.detect.motion import MotionGate, rect_polygons
from pipeline.detect.scan import ScanRegion, full_regions
from pipeline.detect.size_prior import SizePrior
from pipeline.detect.small_faces import SmallFaceRotation


@dataclass(frozen=True)
class ScanPlan:
    """One pass: ``regions`` to scan; keep faces centred inside ``gate_polygons`` (None: no
    polygon gate); ``kind`` is ``full_frame`` | ``motion_gated`` | ``full_scan``; ``guided``
    when the sizes came from the prior; ``input_px`` the detector's input pixels
    (:meth:`Detector.input_pixels`, summed)."""

    regions: list[ScanRegion]
    gate_polygons: list[Polygon] | None
    kind: str
    guided: bool
    input_px: int
    rotated: bool = False


class ScanPlanner:
    """One per camera (not thread-safe); call :meth:`plan` once per detection pass, in stream
    order, and :meth:`learn` with the tracked faces of that pass.

    ``roi_polygons``: the camera's regions of interest (empty: the whole frame); ``prior``:
    the camera's size prior (None: off); ``small_cfg``: the small-face rotation (None: off).
    """

    def __init__(self, gate_cfg: MotionGateConfig, prior_cfg: SizePriorConfig,
                 detector: Detector, roi_polygons: Sequence[Polygon] = (),
                 prior: SizePrior | None = None,
                 small_cfg: SmallFaceScanConfig | None = None) -> None:
        self._gate = MotionGate(gate_cfg) if gate_cfg.enabled else None
        self._detector = detector
        self._roi = list(roi_polygons)
        self._full_scan_ms = prior_cfg.full_scan_interval_s * 1000.0
        self.prior = prior
        self._rotation = (SmallFaceRotation.for_detector(small_cfg, detector)
                          if small_cfg is not None else None)
        self._next_full_scan_ms: float | None = None

    def _prior_ready(self, width: int, height: int) -> bool:
        prior = self.prior
        return prior is not None and prior.converged and prior.frame_wh == (width, height)

    def plan(self, image_bgr: np.ndarray, ts_ms: float,
             face_boxes_xyxy: Sequence[Sequence[float]] = ()) -> ScanPlan:
        """The regions of this pass for a BGR frame ``(H, W, 3)`` at stream time ``ts_ms``;
        ``face_boxes_xyxy``: faces of the previous pass and tracked faces (always scanned)."""
        height, width = image_bgr.shape[:2]
        base = roi_rectangles(self._roi, width, height) if self._roi else [(0, 0, width, height)]
        roi = self._roi or None
        decision = (self._gate.decide(image_bgr, ts_ms, face_boxes_xyxy)
                    if self._gate is not None else None)
        if self._prior_ready(width, height):
            if self._next_full_scan_ms is None:
                self._next_full_scan_ms = ts_ms + self._full_scan_ms
            elif ts_ms >= self._next_full_scan_ms:
                self._next_full_scan_ms = ts_ms + self._full_scan_ms
                return self._finish(full_regions(base, self._detector.full_sizes), roi,
                                    "full_scan", guided=False)
        if decision is None or decision.regions_xyxy is None:
            rects, gate, kind = base, roi, "full_frame"
        else:
            # overlapping regions merge, so no pixel is scanned twice and a face on a seam is
            # seen whole; faces must still be centred in one of the original rectangles
            polygons = rect_polygons(decision.regions_xyxy)
            rects = roi_rectangles(polygons, width, height) if polygons else []
            gate, kind = polygons, "motion_gated"
        guided = self._prior_ready(width, height)
        if guided:
            regions = self.prior.plan(rects, self._detector.input_pixels)
            # known faces of unexpected sizes (the gate's regions already hold their boxes)
            regions += self.prior.face_regions(face_boxes_xyxy)
        else:
            regions = full_regions(rects, self._detector.full_sizes)
        rotated = self._rotation is not None and self._rotation.active and bool(regions)
        if rotated:
            # the gate's periodic full frame takes the bands in turn too, on its own count:
            # a small face too still to show as motion is found within `bands` of them
            refresh = decision is not None and decision.refresh
            regions = self._rotation.apply(regions, width, height, face_boxes_xyxy,
                                           refresh=refresh)
        return self._finish(regions, gate, kind, guided=guided, rotated=rotated)

    def _finish(self, regions: list[ScanRegion], gate: list[Polygon] | None, kind: str,
                guided: bool, rotated: bool = False) -> ScanPlan:
        pixels = sum(self._detector.input_pixels(r.height, r.width, r.sizes) for r in regions)
        return ScanPlan(regions, gate, kind, guided, int(pixels), rotated)

    def learn(self, face_boxes_xyxy: Sequence[Sequence[float]],
              frame_wh: tuple[int, int]) -> None:
        """Feed the prior the tracked faces (boxes in frame pixels) of one detection pass."""
        if self.prior is None:
            return
        for box in face_boxes_xyxy:
            self.prior.observe(box, frame_wh)
