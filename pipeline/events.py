"""Versioned JSON messages on Redis Streams: face-track events and alerts.

Each stream entry has three fields: ``type`` (``face_track`` or ``alert``), ``msg_id`` (unique,
for de-duplication: delivery is at-least-once) and ``data`` (the JSON below). The ``schema``
field inside ``data`` names the version; a reader refuses versions it does not know.
Emotion class names are those of the classifier that produced the event (FER+ today), never
fixed here. docs/events.md documents every field with examples.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import PipelineError
from pipeline.records import FaceEvent
from pipeline.rules.alert import Alert
from pipeline.smoothing import SmoothedEmotion

FACE_TRACK_SCHEMA = "cctv.face_track.v1"
ALERT_SCHEMA = "cctv.alert.v1"
EVIDENCE_SCHEMA = "cctv.evidence.v1"

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
BoxXyxy = tuple[float, float, float, float]


class MessageError(PipelineError):
    """A stream entry is not a message this version understands."""


def new_msg_id() -> str:
    return uuid.uuid4().hex


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SmoothedEmotionV1(_Message):
    probabilities: dict[str, Probability]
    confidence: Probability
    top_class: str
    observations: Annotated[int, Field(ge=0)]


class FaceTrackEventV1(_Message):
    schema_: Literal["cctv.face_track.v1"] = Field(FACE_TRACK_SCHEMA, alias="schema")
    msg_id: str = Field(min_length=8, max_length=64)
    station_id: str
    camera_id: str
    track_id: int
    frame_index: int
    ts_ms: float
    wall_ts_s: float
    first_seen_ts_ms: float
    last_seen_ts_ms: float
    bbox_xyxy: BoxXyxy
    face_size_px: float
    quality: float
    sr_applied: bool
    probabilities: dict[str, Probability] = Field(description="this crop, calibrated")
    smoothed: SmoothedEmotionV1

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _same_classes(self) -> FaceTrackEventV1:
        if set(self.probabilities) != set(self.smoothed.probabilities):
            raise ValueError(f"smoothed classes {sorted(self.smoothed.probabilities)} differ "
                             f"from event classes {sorted(self.probabilities)}")
        return self


class AlertTrackV1(_Message):
    track_id: int
    first_seen_ts_ms: float
    last_seen_ts_ms: float
    bbox_xyxy: BoxXyxy
    score: Probability = Field(description="the rule's emotion score, smoothed")
    confidence: Probability
    matched_since_ts_ms: float


class AlertV1(_Message):
    schema_: Literal["cctv.alert.v1"] = Field(ALERT_SCHEMA, alias="schema")
    msg_id: str = Field(min_length=8, max_length=64)
    station_id: str
    camera_id: str
    rule_id: str
    severity: Literal["info", "low", "medium", "high", "critical"]
    emotions: list[str]
    threshold: Probability
    ts_ms: float
    wall_ts_s: float
    duration_ms: float
    sr_applied: bool
    tracks: list[AlertTrackV1] = Field(min_length=1)
    evidence: list[str] = Field(default_factory=list, description="links to stored clips/images")
    summary: str

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EvidenceRefV1(_Message):
    kind: Literal["clip", "snapshot", "crop"]
    uri: str = Field(description="relative to evidence.dir for the local store, else a URI")
    status: Literal["written", "failed"]
    start_ms: float = Field(description="stream time of the first frame it shows")
    end_ms: float = Field(description="of the last frame (snapshot, crop: the same moment)")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    bytes: Annotated[int, Field(ge=0)] | None = None
    track_id: int | None = Field(default=None, description="crops: the track it belongs to")


class EvidenceV1(_Message):
    """Follow-up of an alert once its evidence files are written (docs/events.md)."""

    schema_: Literal["cctv.evidence.v1"] = Field(EVIDENCE_SCHEMA, alias="schema")
    msg_id: str = Field(min_length=8, max_length=64)
    station_id: str
    camera_id: str
    alert_msg_id: str = Field(min_length=8, max_length=64)
    rule_id: str
    alert_ts_ms: float
    wall_ts_s: float = Field(description="when the evidence was complete")
    requested_start_ms: float
    requested_end_ms: float
    complete: bool = Field(description="every file written and the clip covers the window")
    refs: list[EvidenceRefV1]
    notes: list[str] = Field(default_factory=list)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Message = FaceTrackEventV1 | AlertV1 | EvidenceV1
_BY_TYPE: dict[str, type[FaceTrackEventV1] | type[AlertV1] | type[EvidenceV1]] = {
    "face_track": FaceTrackEventV1, "alert": AlertV1, "evidence": EvidenceV1}


def message_type(message: Message) -> str:
    if isinstance(message, EvidenceV1):
        return "evidence"
    return "alert" if isinstance(message, AlertV1) else "face_track"


def to_fields(message: Message) -> dict[str, str]:
    """Stream entry fields for XADD."""
    return {"type": message_type(message), "msg_id": message.msg_id,
            "data": message.model_dump_json(by_alias=True)}


def _text(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def from_fields(fields: dict) -> Message:
    """Parse a stream entry (bytes or str keys) back into a message; MessageError if bad."""
    try:
        decoded = {_text(k): _text(v) for k, v in fields.items()}
    except UnicodeDecodeError as err:
        raise MessageError(f"entry is not UTF-8: {err}") from err
    kind = decoded.get("type")
    model = _BY_TYPE.get(kind or "")
    if model is None:
        raise MessageError(f"unknown entry type {kind!r}, expected one of {sorted(_BY_TYPE)}")
    if "data" not in decoded:
        raise MessageError("entry has no 'data' field")
    try:
        message = model.model_validate_json(decoded["data"])
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise MessageError(f"{kind} data invalid at {where}: {first['msg']} "
                           f"({err.error_count()} error(s))") from err
    if decoded.get("msg_id") not in (None, message.msg_id):
        raise MessageError(f"entry msg_id {decoded['msg_id']!r} differs from data "
                           f"msg_id {message.msg_id!r}")
    return message


def face_track_data(event: FaceEvent, smoothed: SmoothedEmotion, station_id: str,
                    msg_id: str | None = None) -> dict:
    """The v1 face-track message as a plain dict (the publisher's fast path; the records it
    comes from were validated at construction, and tests check it against the model)."""
    emotion = event.emotion
    return {
        "schema": FACE_TRACK_SCHEMA,
        "msg_id": msg_id or new_msg_id(),
        "station_id": station_id,
        "camera_id": event.camera_id,
        "track_id": int(event.track_id),
        "frame_index": int(event.frame_index),
        "ts_ms": float(event.ts_ms),
        "wall_ts_s": float(event.wall_ts_s),
        "first_seen_ts_ms": float(event.first_seen_ts_ms),
        "last_seen_ts_ms": float(event.last_seen_ts_ms),
        "bbox_xyxy": [float(v) for v in event.bbox_xyxy],
        "face_size_px": float(event.face_size_px),
        "quality": float(event.quality),
        "sr_applied": bool(emotion.sr_applied),
        "probabilities": dict(zip(emotion.class_names, map(float, emotion.probabilities),
                                  strict=True)),
        "smoothed": {
            "probabilities": smoothed.as_dict(),
            "confidence": float(smoothed.confidence),
            "top_class": smoothed.top_class,
            "observations": int(smoothed.observations),
        },
    }


def face_track_fields(event: FaceEvent, smoothed: SmoothedEmotion,
                      station_id: str) -> dict[str, str]:
    """Stream entry fields for one face-track event, without building the pydantic model."""
    data = face_track_data(event, smoothed, station_id)
    return {"type": "face_track", "msg_id": data["msg_id"],
            "data": pydantic_core.to_json(data).decode()}


def face_track_message(event: FaceEvent, smoothed: SmoothedEmotion, station_id: str,
                       msg_id: str | None = None) -> FaceTrackEventV1:
    """The v1 face-track message for one analysed face and its track's smoothed state."""
    return FaceTrackEventV1.model_validate(face_track_data(event, smoothed, station_id, msg_id))


def alert_message(alert: Alert) -> AlertV1:
    return AlertV1(
        msg_id=alert.msg_id,
        station_id=alert.station_id,
        camera_id=alert.camera_id,
        rule_id=alert.rule_id,
        severity=alert.severity,
        emotions=list(alert.emotions),
        threshold=alert.threshold,
        ts_ms=alert.ts_ms,
        wall_ts_s=alert.wall_ts_s,
        duration_ms=alert.duration_ms,
        sr_applied=alert.sr_applied,
        tracks=[AlertTrackV1(
            track_id=t.track_id, first_seen_ts_ms=t.first_seen_ts_ms,
            last_seen_ts_ms=t.last_seen_ts_ms, bbox_xyxy=t.bbox_xyxy, score=t.score,
            confidence=t.confidence, matched_since_ts_ms=t.matched_since_ts_ms)
            for t in alert.tracks],
        evidence=list(alert.evidence),
        summary=alert.summary,
    )
