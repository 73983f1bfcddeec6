"""The alert record a rule produces."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from pipeline.records import CameraRun


@dataclass(frozen=True)
class AlertTrack:
    """One track that satisfied the rule, as it was when the alert fired."""

    track_id: int
    first_seen_ts_ms: float
    last_seen_ts_ms: float
    bbox_xyxy: tuple[float, float, float, float]
    score: float
    confidence: float
    matched_since_ts_ms: float


@dataclass(frozen=True)
class Alert:
    station_id: str
    camera_id: str
    rule_id: str
    severity: str
    emotions: tuple[str, ...]
    threshold: float
    ts_ms: float
    wall_ts_s: float
    duration_ms: float
    sr_applied: bool
    tracks: tuple[AlertTrack, ...]
    evidence: tuple[str, ...] = ()
    msg_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    run: CameraRun | None = None  # who analysed the camera (live); None in replay

    @property
    def summary(self) -> str:
        ids = ", ".join(str(t.track_id) for t in self.tracks)
        who = f"track {ids}" if len(self.tracks) == 1 else f"{len(self.tracks)} tracks ({ids})"
        score = max(t.score for t in self.tracks)
        return (f"{'/'.join(self.emotions)} >= {self.threshold:.2f} for "
                f"{self.duration_ms / 1000:.1f} s on {who}, score {score:.2f}")
