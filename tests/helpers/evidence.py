"""Checks shared by the evidence tests: what an alert's evidence in Redis and on disk must
look like."""

from __future__ import annotations

import hashlib
import io
import stat
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import redis

from pipeline.events import AlertV1, EvidenceV1, from_fields
from pipeline.sinks.streams import alerts_stream, evidence_stream

FRAME_MS = 40.0  # 25 fps test media


def read_evidence(client: redis.Redis, station: str) -> tuple[list[AlertV1], list[EvidenceV1]]:
    alerts = [from_fields(f) for _id, f in client.xrange(alerts_stream("cctv", station))]
    messages = [from_fields(f) for _id, f in client.xrange(evidence_stream("cctv", station))]
    assert all(isinstance(a, AlertV1) for a in alerts)
    assert all(isinstance(m, EvidenceV1) for m in messages)
    return alerts, messages  # type: ignore[return-value]


def check_evidence(root: Path, alerts: list[AlertV1], messages: list[EvidenceV1],
                   frame_wh: tuple[int, int], pre_ms: float, gop_ms: float) -> dict[str, int]:
    """Every alert has one evidence message whose files exist with their SHA-256 and mode
    0600; clips decode and cover the requested window to within one GOP (when the video
    reached that far); snapshots and crops decode. Returns counts per kind."""
    by_alert = {m.alert_msg_id: m for m in messages}
    assert len(by_alert) == len(messages) == len(alerts) > 0
    kinds: dict[str, int] = {}
    for alert in alerts:
        message = by_alert[alert.msg_id]
        assert message.camera_id == alert.camera_id and message.rule_id == alert.rule_id
        assert alert.evidence == [ref.uri for ref in message.refs], "planned = written URIs"
        assert message.requested_start_ms == pytest.approx(alert.ts_ms - pre_ms)
        for ref in message.refs:
            assert ref.status == "written", message.notes
            path = root / ref.uri
            data = path.read_bytes()
            assert hashlib.sha256(data).hexdigest() == ref.sha256 and len(data) == ref.bytes
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
            kinds[ref.kind] = kinds.get(ref.kind, 0) + 1
            if ref.kind == "clip":
                _check_clip(data, ref.start_ms, ref.end_ms, message, gop_ms)
            else:
                image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
                assert image is not None
                if ref.kind == "snapshot":
                    assert (image.shape[1], image.shape[0]) == frame_wh
                    assert ref.start_ms == alert.ts_ms
                else:
                    assert ref.track_id in {t.track_id for t in alert.tracks}
                    assert ref.start_ms <= alert.ts_ms
    return kinds


def _check_clip(data: bytes, start_ms: float, end_ms: float, message: EvidenceV1,
                gop_ms: float) -> None:
    """The clip decodes from a keyframe and spans what its reference says; it covers the
    requested window to within one GOP at the start and one frame at the end, or its
    message says why not (the video did not reach back or on that far)."""
    with av.open(io.BytesIO(data)) as container:
        frames = list(container.decode(video=0))
    assert frames and frames[0].key_frame
    assert frames[-1].time * 1000 == pytest.approx(end_ms - start_ms, abs=1.0)
    notes = " ".join(message.notes)
    if "no earlier video" not in notes:
        assert message.requested_start_ms - gop_ms < start_ms <= message.requested_start_ms
    if "before the requested end" not in notes:
        assert end_ms >= message.requested_end_ms - 1.5 * FRAME_MS
    assert message.complete == (not message.notes)
