"""The whole pipeline on real media: replay and live (RTSP) runs, events read back from a real
Redis. The demo clip (faces 16-32 px, built from insightface's group photo) is the input."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from pipeline.config import AppConfig, parse_config
from pipeline.events import FaceTrackEventV1, from_fields
from pipeline.runner import LiveRunner, ReplayOptions, run_replay
from pipeline.sinks.embedded import EmbeddedRedis
from pipeline.sinks.streams import events_stream
from pipeline.sources import CameraState

REPO = Path(__file__).resolve().parents[1]
pytest.importorskip("insightface", reason="the demo clip is built from insightface's photo")


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.demo_clip import build_demo_clip

    return build_demo_clip(tmp_path_factory.mktemp("demo") / "demo.mp4", seconds=4)


def _config(tmp_path: Path, redis_url: str, extra: str = "") -> AppConfig:
    return parse_config(f"""
station: {{id: test}}
redis:
  url: {redis_url}
  publish_max_wait_ms: 0
spool: {{dir: {tmp_path / 'spool'}}}
{extra}
""")


def _read_events(client: redis.Redis, stream: str) -> list[FaceTrackEventV1]:
    messages = [from_fields(fields) for _id, fields in client.xrange(stream)]
    return [m for m in messages if isinstance(m, FaceTrackEventV1)]


def _comparable(event: FaceTrackEventV1) -> tuple:
    """Everything but the unique id and the wall clock."""
    return (event.track_id, event.frame_index, event.ts_ms, tuple(event.bbox_xyxy),
            tuple(sorted(event.probabilities.items())), event.smoothed.top_class)


def test_replay_publishes_events_deterministically(tmp_path: Path, demo_clip: Path,
                                                   redis_server: EmbeddedRedis,
                                                   redis_client: redis.Redis) -> None:
    config = _config(tmp_path, redis_server.url)
    summary = run_replay(config, ReplayOptions(inputs=demo_clip))
    stream = events_stream("cctv", "test", "demo")
    first = _read_events(redis_client, stream)

    assert summary.frames == 100 and summary.files_ok == 1 and summary.files_failed == 0
    assert summary.faces_detected >= 5 * 20, "the demo has about ten faces in 20 analysed frames"
    assert summary.tracks >= 5
    assert summary.events_published == len(first) > 0
    assert all(16 <= e.face_size_px <= 48 for e in first)  # longer box side: 27-40 px
    assert all(abs(sum(e.probabilities.values()) - 1.0) < 1e-3 for e in first)
    assert {e.camera_id for e in first} == {"demo"}
    assert len({e.msg_id for e in first}) == len(first)
    # a track is analysed once per select.interval_s (1 s) window of stream time, plus once
    # at its end: at most 5 times in this 4 s clip, even though faces are seen in every frame
    per_track: dict[int, int] = {}
    for event in first:
        per_track[event.track_id] = per_track.get(event.track_id, 0) + 1
    assert max(per_track.values()) <= 5

    redis_client.delete(stream)
    run_replay(config, ReplayOptions(inputs=demo_clip))
    second = _read_events(redis_client, stream)
    assert [_comparable(e) for e in second] == [_comparable(e) for e in first]


def test_replay_folder_with_a_corrupt_file_goes_on(tmp_path: Path, demo_clip: Path,
                                                   redis_server: EmbeddedRedis) -> None:
    folder = tmp_path / "footage"
    folder.mkdir()
    shutil.copy(demo_clip, folder / "b_good.mp4")
    (folder / "a_corrupt.mp4").write_bytes(b"\x00\x01not a video" * 500)
    summary = run_replay(_config(tmp_path, redis_server.url), ReplayOptions(inputs=folder))
    assert summary.files_ok == 1 and summary.files_failed == 1
    assert summary.failed_files == [str(folder / "a_corrupt.mp4")]
    assert summary.events_published > 0


def test_replay_cli_with_embedded_redis_summary_and_annotation(tmp_path: Path,
                                                               demo_clip: Path) -> None:
    config_path = tmp_path / "demo.yaml"
    config_path.write_text(f"""
station: {{id: cli}}
redis: {{embedded: true, data_dir: {tmp_path / 'redis'}}}
spool: {{dir: {tmp_path / 'spool'}}}
""")
    summary_path = tmp_path / "summary.json"
    annotated = tmp_path / "annotated.mp4"
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.replay", "--config", str(config_path), "--input",
         str(demo_clip), "--summary-json", str(summary_path), "--annotate", str(annotated),
         "--analysis-fps", "0"],
        capture_output=True, text=True, cwd=REPO, timeout=240)
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    for key in ("frames", "faces_detected", "tracks", "events_published", "dropped_frames",
                "wall_s", "fps"):
        assert key in summary
    assert summary["frames"] == 100 and summary["dropped_frames"] == 0
    assert summary["events_published"] > 0
    assert "| events published" in result.stdout
    # the summary says where the files went
    assert "| annotated video" in result.stdout and str(annotated) in result.stdout
    assert str(summary_path) in result.stdout
    import av

    assert stat.S_IMODE(annotated.stat().st_mode) == 0o600  # it shows faces
    with av.open(str(annotated)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 100
    # the embedded server persisted into its data folder and was stopped at exit
    assert any((tmp_path / "redis").rglob("*.aof*")) or any((tmp_path / "redis").rglob("*.rdb"))
    assert not _processes_mentioning(str(tmp_path / "redis"))


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
        except OSError:
            continue
    return found


def test_town_centre_faces_found_and_tracked(tmp_path: Path, town_centre_clip: Path,
                                             yunet_model: Path,
                                             redis_server: EmbeddedRedis) -> None:
    config = _config(tmp_path, redis_server.url, f"""
detector: {{backend: yunet, model_path: {yunet_model}, min_face_px: 10}}
""")
    summary = run_replay(config, ReplayOptions(inputs=town_centre_clip, analysis_fps=5))
    assert summary.frames == 96
    assert summary.faces_detected >= 40  # about 2-5 faces in each of 20 analysed frames
    assert summary.tracks >= 3
    assert summary.events_published >= summary.tracks


def _wait_for(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_live_rtsp_camera_unaffected_by_a_dead_one(tmp_path: Path, demo_clip: Path,
                                                   redis_server: EmbeddedRedis,
                                                   redis_client: redis.Redis) -> None:
    from tests.helpers.rtsp_server import free_port, serve_copy

    server = serve_copy(demo_clip, tmp_path)
    dead_port = free_port()
    config = _config(tmp_path, redis_server.url, f"""
cameras:
  - {{id: live, url: "{server.url('demo.mp4')}", analysis_fps: 5}}
  - {{id: dead, url: "rtsp://127.0.0.1:{dead_port}/nothing", analysis_fps: 5}}
source:
  open_timeout_s: 2
  read_timeout_s: 2
  reconnect: {{initial_delay_s: 0.2, max_delay_s: 1.0}}
""")
    runner = LiveRunner(config)
    stream = events_stream("cctv", "test", "live")
    thread = threading.Thread(target=runner.run, kwargs={"duration_s": 60}, daemon=True)
    try:
        thread.start()
        assert _wait_for(lambda: redis_client.xlen(stream) >= 3, 45), \
            "no events from the live camera"
        assert _wait_for(lambda: runner.cameras["dead"].health().reconnects >= 2, 10)
    finally:
        runner.stop()
        thread.join(timeout=20)
        server.stop()
    assert not thread.is_alive(), "the live runner did not stop"
    live, dead = runner.cameras["live"].health(), runner.cameras["dead"].health()
    assert live.frames_decoded > 25
    assert dead.frames_decoded == 0 and dead.state in (CameraState.RECONNECTING,
                                                       CameraState.CONNECTING,
                                                       CameraState.STOPPED)
    events = _read_events(redis_client, stream)
    assert events and {e.camera_id for e in events} == {"live"}
    assert redis_client.xlen(events_stream("cctv", "test", "dead")) == 0


def test_replay_with_sr_in_band_and_sr_crops_in_the_annotation(
        tmp_path: Path, demo_clip: Path, redis_server: EmbeddedRedis,
        redis_client: redis.Redis) -> None:
    """enhance.method sr with a real (tiny, nearest-neighbour) ONNX generator: faces inside
    the band are marked sr_applied, others not, and --annotate pastes the SR crops."""
    pytest.importorskip("onnx")
    from pipeline.annotate import SR_CROP_SIDE_PX
    from tests.helpers.tiny_sr import build_sr_onnx, write_sr_manifest

    onnx_path = build_sr_onnx(tmp_path / "tiny_sr.onnx", channels=1)
    manifest = write_sr_manifest(onnx_path, tmp_path / "tiny_sr.json")
    config = _config(tmp_path, redis_server.url, f"""
enhance: {{method: sr, sr_model: {manifest}, sr_size_band_px: [12, 34]}}
""")
    annotated = tmp_path / "sr.mp4"
    summary = run_replay(config, ReplayOptions(inputs=demo_clip, annotate_path=annotated))
    events = _read_events(redis_client, events_stream("cctv", "test", "demo"))
    assert summary.events_published == len(events) > 0
    in_band = [e for e in events if 12 <= e.face_size_px <= 34]
    out_band = [e for e in events if e.face_size_px > 34]
    assert in_band and out_band, "the demo has faces of 27-40 px: both sides of 34"
    assert all(e.sr_applied for e in in_band)
    assert not any(e.sr_applied for e in out_band)
    plain = tmp_path / "plain.mp4"
    run_replay(_config(tmp_path, redis_server.url), ReplayOptions(inputs=demo_clip,
                                                                   annotate_path=plain))
    import av

    def last_frame(path: Path) -> np.ndarray:
        with av.open(str(path)) as container:
            frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
        return frames[-1].astype(np.int16)

    # SR crop tiles (SR_CROP_SIDE_PX square) make the SR annotation differ from the plain one
    changed = np.abs(last_frame(annotated) - last_frame(plain)).max(axis=2) > 40
    assert changed.sum() >= SR_CROP_SIDE_PX * SR_CROP_SIDE_PX


def test_replay_alert_rules_fire_into_the_alerts_stream(tmp_path: Path, demo_clip: Path,
                                                        redis_server: EmbeddedRedis,
                                                        redis_client: redis.Redis) -> None:
    """A rule any face satisfies (neutral or happiness, >= 0.3 for 1 s) fires once per track
    (cooldown longer than the clip); a rule no smoothed state can reach never fires."""
    from pipeline.events import AlertV1
    from pipeline.sinks.streams import alerts_stream

    config = _config(tmp_path, redis_server.url, """
alerts:
  rules:
    - {id: calm, emotions: [neutral, happiness], combine: sum, threshold: 0.3,
       min_duration_s: 1.0, cooldown_s: 60, severity: info}
    - {id: never, emotions: [contempt], threshold: 0.99, min_duration_s: 0.0}
""")
    summary = run_replay(config, ReplayOptions(inputs=demo_clip))
    alerts = [from_fields(f) for _id, f in redis_client.xrange(alerts_stream("cctv", "test"))]
    assert summary.alerts_published == len(alerts) > 0
    assert all(isinstance(a, AlertV1) and a.rule_id == "calm" for a in alerts)
    fired_tracks = [t.track_id for a in alerts for t in a.tracks]
    assert len(fired_tracks) == len(set(fired_tracks)), "cooldown: one alert per track"
    events = _read_events(redis_client, events_stream("cctv", "test", "demo"))
    assert set(fired_tracks) <= {e.track_id for e in events}


def test_replay_converts_to_bgr_only_the_frames_it_analyses(
        tmp_path: Path, demo_clip: Path, redis_server: EmbeddedRedis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """At 5 analysed fps from 25, one frame in five is converted (on the decode thread,
    ahead of analysis); with an annotated video every frame is."""
    import pipeline.sources.decode as decode

    converted: list[int] = []
    real_to_bgr = decode.to_bgr

    def counting_to_bgr(frame: object, apply_rotation: bool = True) -> object:
        converted.append(frame.pts)
        return real_to_bgr(frame, apply_rotation)

    monkeypatch.setattr(decode, "to_bgr", counting_to_bgr)
    config = _config(tmp_path, redis_server.url)
    summary = run_replay(config, ReplayOptions(inputs=demo_clip, analysis_fps=5))
    assert summary.frames == 100 and summary.tracks >= 1
    assert len(converted) == 20
    converted.clear()
    run_replay(config, ReplayOptions(inputs=demo_clip, analysis_fps=5,
                                     annotate_path=tmp_path / "annotated.mp4"))
    assert len(converted) == 100
