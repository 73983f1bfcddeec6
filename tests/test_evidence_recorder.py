"""The evidence recorder on its own (real media through a real ring, a real local store):
the alert comes back at once with its planned URIs, the worker writes once the video
reaches past the window, a failing store is counted and never raises, retention runs while
serving, snapshots blur faces not in the alert, and the consumer prints the references."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.config import EvidenceConfig
from pipeline.consume import readable_line
from pipeline.errors import EvidenceError
from pipeline.evidence import EvidenceRecorder, LocalEvidenceStore
from pipeline.evidence.snapshot import render_snapshot
from pipeline.evidence.store import RetentionResult, StoredObject
from pipeline.metrics import RunMetrics
from pipeline.records import TrackedFace
from pipeline.rules.alert import Alert, AlertTrack
from pipeline.sources import replay_file
from tests.helpers.media import make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("rec") / "clip.mp4", count=75)  # 3 s


def _alert(ts_ms: float) -> Alert:
    track = AlertTrack(track_id=4, first_seen_ts_ms=0.0, last_seen_ts_ms=ts_ms,
                       bbox_xyxy=(40.0, 30.0, 70.0, 66.0), score=0.8, confidence=0.7,
                       matched_since_ts_ms=0.0)
    return Alert(station_id="st", camera_id="cam", rule_id="r", severity="high",
                 emotions=("fear",), threshold=0.6, ts_ms=ts_ms, wall_ts_s=time.time(),
                 duration_ms=1000.0, sr_applied=False, tracks=(track,))


def _serve(recorder: EvidenceRecorder) -> threading.Thread:
    thread = threading.Thread(target=recorder.serve, daemon=True)
    thread.start()
    return thread


def _face(track_id: int, box: tuple[float, float, float, float]) -> TrackedFace:
    return TrackedFace("cam", track_id, 0, 1000.0, box, 0.9)


class _FailingStore(LocalEvidenceStore):
    """A store whose disk is full."""

    def put(self, key: str, data: bytes, reason: str) -> StoredObject:
        raise EvidenceError(f"cannot write evidence {key}: No space left on device")


def test_alert_gets_uris_at_once_and_files_after_the_window(tmp_path: Path, clip: Path) -> None:
    cfg = EvidenceConfig(enabled=True, dir=tmp_path / "ev", pre_s=0.5, post_s=0.5,
                         ring_max_s=6.0, blur_uninvolved_faces=True)
    metrics = RunMetrics()
    recorder = EvidenceRecorder(cfg, metrics)
    worker = _serve(recorder)
    ring = recorder.ring("cam")
    frames = replay_file(clip, camera_id="cam", packets=ring)
    for frame in frames:  # feed up to 1.2 s: the alert at 1.0 s must wait for 1.5 s
        if frame.ts_ms >= 1000.0:
            recorder.note_faces("cam", frame.ts_ms, [_face(4, (40, 30, 70, 66)),
                                                     _face(9, (100, 30, 130, 66))])
        if frame.ts_ms >= 1200.0:
            break
    alert = recorder.attach(_alert(1000.0))
    assert [Path(uri).name for uri in alert.evidence] == ["clip.mp4", "snapshot.jpg"]
    assert alert.evidence[0].startswith(f"cam/{time.strftime('%Y', time.gmtime())}")
    time.sleep(0.6)
    assert recorder.take_messages() == [], "the post-alert video has not arrived yet"
    for _frame in frames:  # the rest of the clip
        pass
    assert recorder.wait_idle(10)
    (message,) = recorder.take_messages()
    recorder.close()
    worker.join(10)
    assert message.complete and message.alert_msg_id == alert.msg_id
    assert [r.uri for r in message.refs] == list(alert.evidence)
    clip_ref = message.refs[0]
    assert clip_ref.start_ms <= 500.0 and clip_ref.end_ms >= 1500.0 - 40.0
    assert metrics.total("evidence_written") == 2 and metrics.total("evidence_failed") == 0
    snapshot = cv2.imread(str(tmp_path / "ev" / message.refs[1].uri))
    assert snapshot.shape == (120, 160, 3)
    lines = readable_line(message).splitlines()
    assert lines[0].split()[1] == "EVIDENCE" and "2 of 2 files written" in lines[0]
    assert lines[1].startswith(f"  clip {clip_ref.uri} ") and f"sha256={clip_ref.sha256}" \
        in lines[1]


def test_a_failing_store_is_counted_and_never_raises(tmp_path: Path, clip: Path) -> None:
    cfg = EvidenceConfig(enabled=True, dir=tmp_path / "ev", pre_s=0.5, post_s=0.5,
                         ring_max_s=6.0)
    metrics = RunMetrics()
    recorder = EvidenceRecorder(cfg, metrics, store=_FailingStore(cfg))
    worker = _serve(recorder)
    for _frame in replay_file(clip, camera_id="cam", packets=recorder.ring("cam")):
        pass
    alert = recorder.attach(_alert(1000.0))
    recorder.close()
    worker.join(10)
    (message,) = recorder.take_messages()
    assert len(alert.evidence) == 2 and not message.complete
    assert [r.status for r in message.refs] == ["failed", "failed"]
    assert all(r.sha256 is None for r in message.refs)
    assert any("No space left" in note for note in message.notes)
    assert metrics.total("evidence_failed") == 2 and recorder.stats().files_failed == 2


def test_no_video_for_the_camera_still_answers(tmp_path: Path) -> None:
    cfg = EvidenceConfig(enabled=True, dir=tmp_path / "ev", clip=False, snapshot=False)
    recorder = EvidenceRecorder(cfg)
    worker = _serve(recorder)
    alert = recorder.attach(_alert(1000.0))
    assert recorder.wait_idle(5)
    recorder.close()
    worker.join(5)
    (message,) = recorder.take_messages()
    assert alert.evidence == () and message.refs == [] and message.notes


def test_retention_runs_while_serving(tmp_path: Path) -> None:
    cfg = EvidenceConfig(enabled=True, dir=tmp_path / "ev", retention={"max_age_h": 1.0})
    store = LocalEvidenceStore(cfg)
    store.put("cam/old/clip.mp4", b"x", reason="test")
    os.utime(store.root / "cam/old/clip.mp4", (0, 0))
    recorder = EvidenceRecorder(cfg, store=store)
    worker = _serve(recorder)
    deadline = time.monotonic() + 5
    while (store.root / "cam/old/clip.mp4").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    recorder.close()
    worker.join(5)
    assert not (store.root / "cam").exists()
    assert isinstance(store.enforce_retention(), RetentionResult)


def test_snapshot_blurs_only_faces_not_in_the_alert() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, size=(120, 160, 3), dtype=np.uint8)
    involved, other = (10.0, 10.0, 40.0, 50.0), (100.0, 40.0, 130.0, 80.0)
    out = render_snapshot(image, {4: involved}, {4: "0.80"}, [other], blur_others=True)
    inside_other = (slice(45, 75), slice(105, 125))
    assert np.abs(out[inside_other].astype(int) - image[inside_other]).mean() > 20
    inside_involved = (slice(15, 45), slice(15, 35))
    assert np.array_equal(out[inside_involved], image[inside_involved]), "not blurred"
    assert tuple(out[10, 25]) != tuple(image[10, 25]), "its box is drawn"
    plain = render_snapshot(image, {4: involved}, {}, [other], blur_others=False)
    assert np.array_equal(plain[inside_other], image[inside_other])
