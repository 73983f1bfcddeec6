"""Message schemas: round trip through stream fields, refusal of malformed entries."""

from __future__ import annotations

import json

import pytest

from pipeline.config import SmoothingConfig
from pipeline.events import (
    ALERT_SCHEMA,
    FACE_TRACK_SCHEMA,
    AlertV1,
    FaceTrackEventV1,
    MessageError,
    alert_message,
    face_track_message,
    from_fields,
    to_fields,
)
from pipeline.records import EmotionResult, FaceEvent
from pipeline.rules.alert import Alert, AlertTrack
from pipeline.smoothing import EmotionSmoother

CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


def make_event(track: int = 7) -> FaceEvent:
    p = (0.05, 0.05, 0.05, 0.05, 0.1, 0.05, 0.6, 0.05)
    return FaceEvent(camera_id="cam-1", track_id=track, frame_index=250, ts_ms=10_000.0,
                     wall_ts_s=1_760_000_000.5, bbox_xyxy=(10.0, 20.0, 40.0, 54.0),
                     face_size_px=30.0, quality=0.71,
                     emotion=EmotionResult(CLASSES, p, sr_applied=True),
                     first_seen_ts_ms=8_000.0, last_seen_ts_ms=10_000.0)


def make_alert() -> Alert:
    return Alert(station_id="st1", camera_id="cam-1", rule_id="fear-sustained",
                 severity="high", emotions=("fear", "anger"), threshold=0.6, ts_ms=10_000.0,
                 wall_ts_s=1_760_000_000.5, duration_ms=2_000.0, sr_applied=True,
                 tracks=(AlertTrack(7, 8_000.0, 10_000.0, (10.0, 20.0, 40.0, 54.0), 0.66, 0.7,
                                    8_000.0),),
                 evidence=("https://evidence.example/st1/cam-1/10000.mp4",))


def test_face_track_round_trip() -> None:
    event = make_event()
    smoothed = EmotionSmoother(SmoothingConfig()).update("cam-1", 7, 10_000.0, event.emotion)
    message = face_track_message(event, smoothed, "st1")
    fields = to_fields(message)
    assert fields["type"] == "face_track" and fields["msg_id"] == message.msg_id
    data = json.loads(fields["data"])
    assert data["schema"] == FACE_TRACK_SCHEMA
    assert data["probabilities"]["fear"] == pytest.approx(0.6)
    assert data["smoothed"]["top_class"] == "fear"
    assert data["sr_applied"] is True and data["bbox_xyxy"] == [10.0, 20.0, 40.0, 54.0]
    wire = {k.encode(): v.encode() for k, v in fields.items()}  # as redis returns it
    back = from_fields(wire)
    assert isinstance(back, FaceTrackEventV1) and back == message


def test_alert_round_trip() -> None:
    alert = make_alert()
    message = alert_message(alert)
    data = json.loads(to_fields(message)["data"])
    assert data["schema"] == ALERT_SCHEMA and data["rule_id"] == "fear-sustained"
    assert data["tracks"][0]["track_id"] == 7 and data["evidence"]
    back = from_fields(to_fields(message))
    assert isinstance(back, AlertV1) and back == message and back.msg_id == alert.msg_id


def test_class_names_come_from_the_event() -> None:
    event = make_event()
    other = EmotionResult(("calm", "alarmed"), (0.3, 0.7), sr_applied=False)
    event = FaceEvent(**{**event.__dict__, "emotion": other})
    smoothed = EmotionSmoother(SmoothingConfig()).update("cam-1", 7, 0.0, other)
    back = from_fields(to_fields(face_track_message(event, smoothed, "st1")))
    assert set(back.probabilities) == {"calm", "alarmed"}


@pytest.mark.parametrize(("fields", "message"), [
    ({"type": "face_track", "msg_id": "x" * 32, "data": "{not json"}, "data invalid"),
    ({"type": "weather", "data": "{}"}, "unknown entry type"),
    ({"type": "alert"}, "no 'data'"),
    ({b"type": b"alert", b"data": b"\xff\xfe"}, "not UTF-8"),
])
def test_malformed_entries_raise_message_error(fields: dict, message: str) -> None:
    with pytest.raises(MessageError, match=message):
        from_fields(fields)


def test_unknown_schema_version_refused() -> None:
    fields = to_fields(alert_message(make_alert()))
    data = json.loads(fields["data"])
    data["schema"] = "cctv.alert.v2"
    with pytest.raises(MessageError, match="schema"):
        from_fields({**fields, "data": json.dumps(data)})


def test_msg_id_mismatch_refused() -> None:
    fields = to_fields(alert_message(make_alert()))
    with pytest.raises(MessageError, match="differs"):
        from_fields({**fields, "msg_id": "0" * 32})
