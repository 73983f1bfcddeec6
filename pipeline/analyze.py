"""Per-camera frame analysis: detect (at the camera's analysis rate), track, score quality,
select the best crop per track and align it. No threads here; the runner calls
:meth:`CameraAnalyzer.process` for each decoded frame of one camera, in order."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.align import align_face
from pipeline.config import AppConfig, CameraConfig
from pipeline.detect import Detector
from pipeline.detect.geometry import centres_inside
from pipeline.detect.planner import ScanPlanner
from pipeline.detect.size_prior import PriorStore, SizePrior
from pipeline.metrics import RunMetrics
from pipeline.quality import face_quality
from pipeline.records import CameraRun, Detection, Frame, TrackedFace
from pipeline.select import CropSelector, Selection
from pipeline.sources.decode import DecodedFrame
from pipeline.track import FaceTracker

# An aligned crop frames the face at about this fraction of its width (see pipeline.align).
_FACE_FRACTION_OF_CROP = 0.9


@dataclass(frozen=True)
class CropRequest:
    """An aligned low-resolution face waiting for enhance + classify."""

    camera_id: str
    track_id: int
    frame_index: int
    ts_ms: float
    wall_ts_s: float
    bbox_xyxy: tuple[float, float, float, float]
    face_size_px: float
    quality: float
    crop_lr_bgr: np.ndarray = field(repr=False)
    first_seen_ts_ms: float = 0.0
    last_seen_ts_ms: float = 0.0
    run: CameraRun | None = None


@dataclass(frozen=True)
class FrameAnalysis:
    frame_index: int
    ts_ms: float
    detected: bool
    faces: list[TrackedFace]
    crops: list[CropRequest]
    ended_track_ids: list[int]
    # what the detector found this pass, tracked or not (empty between detection passes)
    detections: list[Detection] = field(default_factory=list)


def native_crop_size(face_size_px: float, target_px: int) -> int:
    """Side of an aligned crop that keeps the face at its native resolution (no upsampling)."""
    native = round(face_size_px / _FACE_FRACTION_OF_CROP)
    return int(min(max(native, 8), target_px))


class DetectionCadence:
    """Which frames are detection passes: a fixed cadence of stream time (1 / analysis_fps),
    so a 25 fps stream analysed at 5 fps detects on every 5th frame, in replay and live
    alike; ``analysis_fps`` None or 0: every frame. Deterministic in the frame times, so a
    second instance fed the same times (replay's decode thread, converting ahead only the
    frames analysis will read) makes the same decisions."""

    def __init__(self, analysis_fps: float | None) -> None:
        self._interval_ms = (1000.0 / analysis_fps) if analysis_fps else 0.0
        self._next_ts_ms: float | None = None

    def due(self, ts_ms: float) -> bool:
        """True when the frame at stream time ``ts_ms`` is a detection pass; call once per
        frame, in stream order."""
        if self._next_ts_ms is not None and ts_ms + 1e-6 < self._next_ts_ms:
            return False
        start = ts_ms if self._next_ts_ms is None else self._next_ts_ms
        self._next_ts_ms = start + self._interval_ms
        if self._next_ts_ms <= ts_ms:  # the stream jumped ahead: restart the cadence
            self._next_ts_ms = ts_ms + self._interval_ms
        return True


class CameraAnalyzer:
    """Owns one camera's detector call pacing, tracker and crop selector."""

    def __init__(self, camera: CameraConfig, config: AppConfig, detector: Detector,
                 metrics: RunMetrics, run: CameraRun | None = None,
                 persist_prior: bool = False) -> None:
        """``run``: who analyses the camera (live); it is carried on every crop and event.
        ``persist_prior``: keep the camera's face-size prior in
        ``detector.size_prior.state_dir`` across restarts (live; replay learns afresh so it
        gives the same results run after run)."""
        self.camera = camera
        self._run = run
        self._crop_size_px = config.select.crop_size_px
        self._detector = detector
        self._tracker = FaceTracker(config.tracker, camera.id)
        self._selector = CropSelector(config.select)
        self._metrics = metrics
        self._cadence = DetectionCadence(camera.analysis_fps)
        prior_cfg = config.detector.size_prior
        self._prior_store: PriorStore | None = None
        prior = None
        if prior_cfg.enabled:
            if persist_prior and prior_cfg.state_dir is not None:
                self._prior_store = PriorStore(prior_cfg.state_dir, camera.id,
                                               prior_cfg.save_interval_s)
                prior = self._prior_store.load(prior_cfg, config.detector.min_face_px)
            else:
                prior = SizePrior(prior_cfg, config.detector.min_face_px)
        self._planner = ScanPlanner(config.detector.motion_gate, prior_cfg, detector,
                                    camera.roi_polygons, prior,
                                    config.detector.small_face_scan)
        # last box and time of every recent track: a face the detector missed once is still
        # scanned where it was, until the tracker would give it up
        self._recent_track_boxes: dict[int, tuple[float, tuple[float, float, float, float]]] = {}
        self._recent_ttl_ms = config.tracker.lost_ttl_s * 1000.0
        self._last_detection_boxes: list[tuple[float, float, float, float]] = []
        self._first_seen: dict[int, float] = {}
        self._last_seen: dict[int, float] = {}
        self._segment = 0

    def process(self, frame: Frame | DecodedFrame) -> FrameAnalysis:
        """Detect (when due), track, select and align on one frame of this camera, in stream
        order. The image is read only on detection passes: a live
        :class:`~pipeline.sources.decode.DecodedFrame` is converted to BGR only then."""
        cam = self.camera.id
        self._metrics.count(cam, "frames_analysed")
        # A timestamp discontinuity (another recording, a reboot): tracks from before it end
        # here, with their pending crops, before this frame can extend them.
        pre_crops: list[CropRequest] = []
        pre_ended: list[int] = []
        if frame.segment != self._segment:
            self._segment = frame.segment
            self._metrics.count(cam, "timestamp_discontinuities")
            pre_crops, pre_ended = self.finish(frame.wall_ts_s)
        detected = self._cadence.due(frame.ts_ms)
        detections: list[Detection] = []
        if detected:
            with self._metrics.time_stage("detect"):
                detections = self._detect(frame)
            self._metrics.count(cam, "faces_detected", len(detections))
            self._metrics.count(cam, "detector_runs")
            with self._metrics.time_stage("track"):
                faces = self._tracker.update(frame.index, frame.ts_ms, detections)
            self._learn_sizes(frame, faces)
        else:
            with self._metrics.time_stage("track"):
                faces = self._tracker.predict(frame.index, frame.ts_ms)
        for face in faces:
            self._recent_track_boxes[face.track_id] = (face.ts_ms, face.bbox_xyxy)
        selections: list[Selection] = []
        with self._metrics.time_stage("select"):
            for face in faces:
                if face.track_id not in self._first_seen:
                    self._first_seen[face.track_id] = face.ts_ms
                    self._metrics.count(cam, "tracks")
                self._last_seen[face.track_id] = face.ts_ms
                if face.is_predicted:
                    continue
                quality = face_quality(frame.image_bgr, face.bbox_xyxy, face.landmarks_xy)
                selection = self._selector.offer(face, quality, frame.image_bgr)
                if selection is not None:
                    selections.append(selection)
            ended = [summary.track_id for summary in self._tracker.ended_tracks()]
            for track_id in ended:
                selection = self._selector.end_track(track_id)
                if selection is not None:
                    selections.append(selection)
        crops = [self._align(selection, frame) for selection in selections]
        for track_id in ended:
            self._first_seen.pop(track_id, None)
            self._last_seen.pop(track_id, None)
        return FrameAnalysis(frame.index, frame.ts_ms, detected, faces, pre_crops + crops,
                             pre_ended + ended, detections)

    def _detect(self, frame: Frame | DecodedFrame) -> list[Detection]:
        """Run the detector where the planner says: the whole frame (or the camera's ROI) or
        only where the motion gate saw change and around tracked faces, each region at the
        face sizes the camera's size prior expects there (pipeline/detect/planner.py)."""
        cam = self.camera.id
        self._recent_track_boxes = {
            track_id: (ts, box) for track_id, (ts, box) in self._recent_track_boxes.items()
            if frame.ts_ms - ts <= self._recent_ttl_ms}
        recent = [box for _ts, box in self._recent_track_boxes.values()]
        plan = self._planner.plan(frame.image_bgr, frame.ts_ms,
                                  recent + self._last_detection_boxes)
        self._metrics.count(cam, f"detect_{plan.kind}")
        if plan.guided:
            self._metrics.count(cam, "detect_size_guided")
        if plan.rotated:
            self._metrics.count(cam, "detect_small_faces_rotated")
        self._metrics.count(cam, "detector_input_px", plan.input_px)
        detections = []
        if plan.regions:
            detections = self._detector.detect_regions(frame.image_bgr, plan.regions,
                                                       plan.gate_polygons)
        roi = self.camera.roi_polygons
        if roi and detections and plan.kind == "motion_gated":
            inside = centres_inside(np.array([d.bbox_xyxy for d in detections]), roi)
            detections = [d for d, keep in zip(detections, inside, strict=True) if keep]
        self._last_detection_boxes = [d.bbox_xyxy for d in detections]
        return detections

    def _learn_sizes(self, frame: Frame | DecodedFrame, faces: list[TrackedFace]) -> None:
        """The tracked faces of a detection pass teach the camera's size prior."""
        height, width = frame.image_bgr.shape[:2]
        self._planner.learn([f.bbox_xyxy for f in faces if not f.is_predicted], (width, height))
        if self._prior_store is not None and self._planner.prior is not None:
            self._prior_store.maybe_save(self._planner.prior, frame.ts_ms)

    def finish(self, wall_ts_s: float) -> tuple[list[CropRequest], list[int]]:
        """End every track (end of stream, or a discontinuity); return the crops still
        pending and the ended ids."""
        self._tracker.flush()
        crops = []
        ended = []
        for summary in self._tracker.ended_tracks():
            ended.append(summary.track_id)
            selection = self._selector.end_track(summary.track_id)
            if selection is not None:
                crops.append(self._align_selection(selection, wall_ts_s))
        for track_id in ended:
            self._first_seen.pop(track_id, None)
            self._last_seen.pop(track_id, None)
        self._recent_track_boxes.clear()
        self._last_detection_boxes = []
        if self._prior_store is not None and self._planner.prior is not None:
            self._prior_store.save(self._planner.prior)
        return crops, ended

    def _align(self, selection: Selection, frame: Frame | DecodedFrame) -> CropRequest:
        return self._align_selection(selection, frame.wall_ts_s)

    def _align_selection(self, selection: Selection, wall_ts_s: float) -> CropRequest:
        with self._metrics.time_stage("align"):
            size = native_crop_size(selection.face_size_px, self._crop_size_px)
            crop = align_face(selection.patch_bgr, size,
                              landmarks_xy=selection.landmarks_in_patch_xy(),
                              bbox_xyxy=selection.bbox_in_patch_xyxy())
        return CropRequest(
            camera_id=self.camera.id, track_id=selection.track_id,
            frame_index=selection.frame_index, ts_ms=selection.ts_ms, wall_ts_s=wall_ts_s,
            bbox_xyxy=selection.bbox_xyxy, face_size_px=selection.face_size_px,
            quality=selection.quality, crop_lr_bgr=crop,
            first_seen_ts_ms=self._first_seen.get(selection.track_id, selection.ts_ms),
            last_seen_ts_ms=self._last_seen.get(selection.track_id, selection.ts_ms),
            run=self._run)
