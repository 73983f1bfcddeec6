"""ByteTrack-style multi-face tracker for one camera.

Per detection frame: every track is advanced to the frame's stream time by its Kalman
filter; high-score detections are matched first against all active and lost tracks,
low-score detections then extend the remaining active tracks only, tentative tracks are
matched against the high-score leftovers, and only unmatched high-score detections start new
tracks. A track is confirmed after ``min_hits`` matched detections and only then gets its
public id, so false positives do not burn ids. Lost tracks are kept for ``lost_ttl_s`` of
stream time (``ts_ms``), never wall time, so replays are deterministic.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np

from pipeline.config import TrackerConfig
from pipeline.errors import PipelineError
from pipeline.records import Detection, TrackedFace
from pipeline.track.kalman import BoxKalman
from pipeline.track.matching import match_boxes, match_by_centre


@dataclass(frozen=True)
class TrackSummary:
    """A track that has ended: what the runner needs to close its per-track state."""

    camera_id: str
    track_id: int
    first_seen_ts_ms: float
    last_seen_ts_ms: float
    first_frame_index: int
    last_frame_index: int
    hit_count: int  # detections matched to the track


class _State(enum.Enum):
    TENTATIVE = "tentative"
    ACTIVE = "active"
    LOST = "lost"


@dataclass
class _Track:
    kalman: BoxKalman
    state_ts_ms: float
    first_seen_ts_ms: float
    first_frame_index: int
    last_seen_ts_ms: float
    last_frame_index: int
    score: float
    state: _State = _State.TENTATIVE
    track_id: int = -1
    hit_count: int = 1

    def advance(self, ts_ms: float) -> None:
        self.kalman.predict((ts_ms - self.state_ts_ms) / 1000.0)
        self.state_ts_ms = max(self.state_ts_ms, ts_ms)

    def summary(self, camera_id: str) -> TrackSummary:
        return TrackSummary(camera_id=camera_id, track_id=self.track_id,
                            first_seen_ts_ms=self.first_seen_ts_ms,
                            last_seen_ts_ms=self.last_seen_ts_ms,
                            first_frame_index=self.first_frame_index,
                            last_frame_index=self.last_frame_index, hit_count=self.hit_count)


class FaceTracker:
    """Tracks faces of one camera. Not thread-safe: the runner calls it from one thread."""

    def __init__(self, cfg: TrackerConfig, camera_id: str) -> None:
        self._cfg = cfg
        self._camera_id = camera_id
        self._tracks: list[_Track] = []  # creation order, which keeps outputs deterministic
        self._ended: list[TrackSummary] = []
        self._next_id = 1
        self._last_ts_ms: float | None = None

    @property
    def camera_id(self) -> str:
        return self._camera_id

    def update(self, frame_index: int, ts_ms: float,
               detections: list[Detection]) -> list[TrackedFace]:
        """Associate one frame's detections; return confirmed tracks seen in this frame."""
        self._advance_all(ts_ms)
        cfg = self._cfg
        high = [d for d in detections if d.score >= cfg.high_score]
        low = [d for d in detections if cfg.low_score <= d.score < cfg.high_score]
        confirmed = [t for t in self._tracks if t.state is not _State.TENTATIVE]
        tentative = [t for t in self._tracks if t.state is _State.TENTATIVE]
        matched: list[tuple[_Track, Detection]] = []

        # Stage 1: high-score detections against every confirmed track, lost ones included.
        pairs, rest_t, rest_d = match_boxes([t.kalman.bbox_xyxy for t in confirmed],
                                            [d.bbox_xyxy for d in high], cfg.match_iou,
                                            cfg.box_expand)
        matched += [(confirmed[t], high[d]) for t, d in pairs]
        high_left = [high[d] for d in rest_d]
        # Stage 1b: what IoU missed, by centre distance (fast faces at low analysis rates).
        confirmed_left = [confirmed[t] for t in rest_t]
        pairs, rest_t, rest_d = self._match_centres(confirmed_left, high_left, ts_ms)
        matched += [(confirmed_left[t], high_left[d]) for t, d in pairs]
        high_left = [high_left[d] for d in rest_d]
        rest_t = [confirmed.index(confirmed_left[t]) for t in rest_t]
        # Stage 2: low-score detections may only extend tracks that were active, never revive
        # lost ones or start new ones (they are mostly blur, occlusion or false positives).
        active_left = [confirmed[t] for t in rest_t if confirmed[t].state is _State.ACTIVE]
        pairs, unmatched_active, _ = match_boxes([t.kalman.bbox_xyxy for t in active_left],
                                                 [d.bbox_xyxy for d in low], cfg.low_match_iou,
                                                 cfg.box_expand)
        matched += [(active_left[t], low[d]) for t, d in pairs]
        # Stage 3: tentative tracks need another high-score detection or they are dropped.
        pairs, unmatched_tentative, rest_d = match_boxes(
            [t.kalman.bbox_xyxy for t in tentative], [d.bbox_xyxy for d in high_left],
            cfg.match_iou, cfg.box_expand)
        matched += [(tentative[t], high_left[d]) for t, d in pairs]
        tentative_left = [tentative[t] for t in unmatched_tentative]
        high_left = [high_left[d] for d in rest_d]
        pairs, unmatched_left, rest_d = self._match_centres(tentative_left, high_left, ts_ms)
        matched += [(tentative_left[t], high_left[d]) for t, d in pairs]
        unmatched_tentative = [tentative.index(tentative_left[t]) for t in unmatched_left]

        for track, det in matched:
            self._apply_detection(track, det, frame_index, ts_ms)
        for index in unmatched_active:
            active_left[index].state = _State.LOST
        dropped = {id(tentative[i]) for i in unmatched_tentative}
        self._tracks = [t for t in self._tracks if id(t) not in dropped]
        for index in rest_d:
            track = self._start_track(high_left[index], frame_index, ts_ms)
            matched.append((track, high_left[index]))
        self._expire(ts_ms)

        seen = {id(track): det for track, det in matched}
        return [self._face(t, frame_index, ts_ms, det=seen[id(t)]) for t in self._tracks
                if t.state is _State.ACTIVE and id(t) in seen]

    def _match_centres(self, tracks: list[_Track], detections: list[Detection],
                       ts_ms: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
        cfg = self._cfg
        if cfg.centre_gate_sizes <= 0.0:
            return [], list(range(len(tracks))), list(range(len(detections)))
        allowance = [cfg.centre_gate_sizes + cfg.centre_gate_sizes_per_s
                     * min(ts_ms - t.last_seen_ts_ms, cfg.lost_ttl_s * 1000.0) / 1000.0
                     for t in tracks]
        return match_by_centre([t.kalman.bbox_xyxy for t in tracks],
                               [d.bbox_xyxy for d in detections], allowance, cfg.max_size_ratio)

    def predict(self, frame_index: int, ts_ms: float) -> list[TrackedFace]:
        """Advance tracks on a frame without detection; return active tracks' predicted boxes."""
        self._advance_all(ts_ms)
        self._expire(ts_ms)
        return [self._face(t, frame_index, ts_ms, det=None) for t in self._tracks
                if t.state is _State.ACTIVE]

    def ended_tracks(self) -> list[TrackSummary]:
        """Confirmed tracks that expired since the last call (each is reported once)."""
        ended, self._ended = self._ended, []
        return ended

    def flush(self) -> None:
        """End every track (end of input); their summaries come from :meth:`ended_tracks`."""
        for track in self._tracks:
            if track.state is not _State.TENTATIVE:
                self._ended.append(track.summary(self._camera_id))
        self._tracks = []

    def _advance_all(self, ts_ms: float) -> None:
        if not np.isfinite(ts_ms):
            raise PipelineError(f"tracker {self._camera_id}: expected a finite ts_ms, got {ts_ms}")
        if self._last_ts_ms is not None and ts_ms < self._last_ts_ms:
            raise PipelineError(f"tracker {self._camera_id}: ts_ms went backwards "
                                f"({self._last_ts_ms} -> {ts_ms}); create a new tracker on "
                                f"stream restart")
        self._last_ts_ms = ts_ms
        for track in self._tracks:
            track.advance(ts_ms)

    def _apply_detection(self, track: _Track, det: Detection, frame_index: int,
                         ts_ms: float) -> None:
        track.kalman.update(det.bbox_xyxy)
        track.last_seen_ts_ms = ts_ms
        track.last_frame_index = frame_index
        track.score = float(det.score)
        track.hit_count += 1
        if track.state is not _State.TENTATIVE:
            track.state = _State.ACTIVE
        elif track.hit_count >= self._cfg.min_hits:
            self._confirm(track)

    def _start_track(self, det: Detection, frame_index: int, ts_ms: float) -> _Track:
        track = _Track(kalman=BoxKalman(det.bbox_xyxy), state_ts_ms=ts_ms,
                       first_seen_ts_ms=ts_ms, first_frame_index=frame_index,
                       last_seen_ts_ms=ts_ms, last_frame_index=frame_index,
                       score=float(det.score))
        self._tracks.append(track)
        if self._cfg.min_hits <= 1:
            self._confirm(track)
        return track

    def _confirm(self, track: _Track) -> None:
        track.state = _State.ACTIVE
        track.track_id = self._next_id
        self._next_id += 1

    def _expire(self, ts_ms: float) -> None:
        ttl_ms = self._cfg.lost_ttl_s * 1000.0
        keep = []
        for track in self._tracks:
            if track.state is _State.LOST and ts_ms - track.last_seen_ts_ms > ttl_ms:
                self._ended.append(track.summary(self._camera_id))
            else:
                keep.append(track)
        self._tracks = keep

    def _face(self, track: _Track, frame_index: int, ts_ms: float,
              det: Detection | None) -> TrackedFace:
        if det is not None:
            # Report the detector's own box and landmarks: alignment wants the measurement,
            # not the filter's smoothed estimate.
            return TrackedFace(camera_id=self._camera_id, track_id=track.track_id,
                               frame_index=frame_index, ts_ms=ts_ms, bbox_xyxy=det.bbox_xyxy,
                               score=float(det.score), landmarks_xy=det.landmarks_xy,
                               is_predicted=False)
        return TrackedFace(camera_id=self._camera_id, track_id=track.track_id,
                           frame_index=frame_index, ts_ms=ts_ms,
                           bbox_xyxy=track.kalman.bbox_xyxy, score=track.score,
                           landmarks_xy=None, is_predicted=True)
