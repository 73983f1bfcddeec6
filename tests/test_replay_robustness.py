"""Field robustness of replay (issue 11, video): timestamp discontinuities, damaged and cut-off
files, display rotation. Each kind is tested on media made here with PyAV (restarts, forward
jumps, wrap-around; damaged bytes, truncation; 90/180/270) and on the field cases in
``$CCTV_SHARED/cases`` when present, end to end with events read back from a real Redis."""

from __future__ import annotations

import itertools
import shutil
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import redis

from pipeline.config import AppConfig, parse_config
from pipeline.events import FaceTrackEventV1, from_fields
from pipeline.runner import ReplayOptions, run_replay
from pipeline.sinks.embedded import EmbeddedRedis
from pipeline.sinks.streams import events_stream
from pipeline.sources import DecodeReport, replay_file
from tests.conftest import shared_dir

CASES = shared_dir() / "cases"


def pattern_frames(count: int, width: int = 160, height: int = 96) -> list[np.ndarray]:
    """Asymmetric frames (a bright block top-left, a frame counter bar) so rotation shows."""
    frames = []
    for i in range(count):
        img = np.full((height, width, 3), 40, np.uint8)
        img[8:40, 8:56] = (230, 230, 230)
        img[height - 12:height - 4, 4:4 + (i * 3) % (width - 8)] = (0, 200, 0)
        frames.append(img)
    return frames


def write_with_pts(path: Path, frames: list[np.ndarray], pts: list[int], fps: int = 25,
                   rotation: int = 0, gop: int = 25) -> Path:
    """Encode with explicit presentation times (in 1/90000 s for MPEG-TS, 1/fps otherwise)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.max_b_frames = 0
        stream.codec_context.gop_size = gop  # cameras send a keyframe every second or two
        stream.codec_context.options = {"preset": "veryfast", "tune": "zerolatency"}
        if rotation:
            stream.set_display_rotation(rotation)
        tb = Fraction(1, 90000) if path.suffix == ".ts" else Fraction(1, fps)
        stream.time_base = tb
        for image, p in zip(frames, pts, strict=True):
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = p, tb
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


TICK = 3600  # one frame at 25 fps in 90 kHz units
WRAP = 1 << 33


def joined_ts(path: Path, first_pts: list[int], second_pts: list[int]) -> Path:
    """Two MPEG-TS recordings joined end to end (as camera exports are): the muxer would
    refuse a backwards pts inside one file, concatenation does not."""
    a = write_with_pts(path.with_name("a.ts"), pattern_frames(len(first_pts)), first_pts)
    b = write_with_pts(path.with_name("b.ts"), pattern_frames(len(second_pts)), second_pts)
    path.write_bytes(a.read_bytes() + b.read_bytes())
    return path


@pytest.mark.parametrize(("name", "first", "second", "jumps"), [
    ("restart", [i * TICK for i in range(30)], [i * TICK for i in range(30)], 1),
    ("forward_jump_1h", [i * TICK for i in range(30)],
     [3600 * 90000 + i * TICK for i in range(30)], 1),
    # the 33-bit MPEG-TS clock wrapping is continuous time: FFmpeg unwraps it, no jump
    ("wrap_around", [WRAP - (30 - i) * TICK for i in range(30)], [i * TICK for i in range(30)],
     0),
])
def test_timestamps_stay_monotonic_across_discontinuities(tmp_path: Path, name: str,
                                                          first: list[int], second: list[int],
                                                          jumps: int,
                                                          caplog: pytest.LogCaptureFixture
                                                          ) -> None:
    path = joined_ts(tmp_path / f"{name}.ts", first, second)
    report = DecodeReport()
    frames = list(replay_file(path, report=report))
    ts = [f.ts_ms for f in frames]
    assert len(frames) == 60
    assert all(b > a for a, b in itertools.pairwise(ts)), "stream time never goes back"
    steps = np.diff(ts)
    assert steps.max() < 100.0, "the jump is replaced by one frame interval"
    assert report.timestamp_discontinuities == jumps
    assert [f.segment for f in frames] == [0] * 30 + [jumps] * 30
    warnings = [r.getMessage() for r in caplog.records if "timestamps jump" in r.getMessage()]
    assert len(warnings) == jumps and all("at frame 30" in w for w in warnings)


def test_small_forward_gap_is_kept_as_real_time(tmp_path: Path) -> None:
    path = joined_ts(tmp_path / "gap.ts", [i * TICK for i in range(20)],
                     [(2 + 5) * 90000 + i * TICK for i in range(20)])
    report = DecodeReport()
    frames = list(replay_file(path, report=report))
    assert report.timestamp_discontinuities == 0
    gap_ms = frames[20].ts_ms - frames[19].ts_ms
    assert 6000 < gap_ms < 6300, gap_ms  # a ~6.2 s recording gap stays real time
    assert {f.segment for f in frames} == {0}


def _encode_plain(path: Path, count: int = 75) -> Path:
    return write_with_pts(path, pattern_frames(count, 320, 192), list(range(count)))


def test_damaged_packets_are_skipped_and_counted(tmp_path: Path) -> None:
    path = _encode_plain(tmp_path / "clip.mp4")
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    start = len(data) // 2
    data[start:start + 1500] = rng.integers(0, 256, 1500, dtype=np.uint8).tobytes()
    damaged = tmp_path / "damaged.mp4"
    damaged.write_bytes(bytes(data))
    report = DecodeReport()
    frames = list(replay_file(damaged, report=report))
    assert report.damaged_packets >= 1
    # frames after the damage decode again from the next keyframe on
    assert 45 <= len(frames) < 75 and frames[-1].ts_ms > 2500
    assert report.damaged


def test_cut_off_file_keeps_what_decoded(tmp_path: Path) -> None:
    path = write_with_pts(tmp_path / "clip.ts", pattern_frames(75, 320, 192),
                          [i * TICK for i in range(75)])
    data = path.read_bytes()
    cut = tmp_path / "cut.ts"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    report = DecodeReport()
    frames = list(replay_file(cut, report=report))
    assert 20 <= len(frames) < 75
    assert [f.index for f in frames] == list(range(len(frames)))


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_frames_are_turned_upright_by_the_display_matrix(tmp_path: Path, rotation: int) -> None:
    upright = pattern_frames(10, 160, 96)
    coded = [np.ascontiguousarray(np.rot90(f, -rotation // 90)) for f in upright]
    path = write_with_pts(tmp_path / f"rot{rotation}.mp4", coded, list(range(10)),
                          rotation=rotation)
    report = DecodeReport()
    frames = list(replay_file(path, report=report))
    assert report.rotation_deg == rotation
    for got, want in zip(frames, upright, strict=True):
        assert got.image_bgr.shape == want.shape
        assert np.abs(got.image_bgr.astype(int) - want).mean() < 6
    raw = list(replay_file(path, source=parse_config("{}").source.model_copy(
        update={"apply_display_rotation": False})))
    assert raw[0].image_bgr.shape == coded[0].shape


# --- the shared field cases, end to end with a real Redis -----------------------------------

def _config(tmp_path: Path, redis_url: str) -> AppConfig:
    return parse_config(f"""
station: {{id: cases}}
redis: {{url: {redis_url}, publish_max_wait_ms: 0}}
spool: {{dir: {tmp_path / 'spool'}}}
""")


def _events(client: redis.Redis, camera: str) -> list[FaceTrackEventV1]:
    stream = events_stream("cctv", "cases", camera)
    messages = [from_fields(fields) for _id, fields in client.xrange(stream)]
    return [m for m in messages if isinstance(m, FaceTrackEventV1)]


def _case(name: str) -> Path:
    folder = CASES / name
    if not folder.is_dir():
        pytest.skip(f"field case {folder} not found (set CCTV_SHARED)")
    return folder


def test_case_ts_restart_folder_is_analysed_whole(tmp_path: Path, redis_server: EmbeddedRedis,
                                                  redis_client: redis.Redis) -> None:
    summary = run_replay(_config(tmp_path, redis_server.url),
                         ReplayOptions(inputs=_case("ts-restart")))
    assert (summary.files_ok, summary.files_failed) == (2, 0)
    assert summary.frames == 175 and summary.timestamp_discontinuities == 1
    first, second = _events(redis_client, "a_cam_export"), _events(redis_client, "b_cam_export")
    assert second, "the second file in the folder is replayed"
    assert any(e.frame_index < 50 for e in first) and any(e.frame_index >= 50 for e in first)
    ts = [e.ts_ms for e in sorted(first, key=lambda e: (e.frame_index, e.track_id))]
    assert all(b >= a for a, b in itertools.pairwise(ts))
    # tracks end at the join: none spans both recordings
    for track in {e.track_id for e in first}:
        frames = [e.frame_index for e in first if e.track_id == track]
        assert max(frames) < 50 or min(frames) >= 50
    assert summary.events_published > 14


def test_case_corrupt_packet_publishes_what_was_seen(tmp_path: Path,
                                                     redis_server: EmbeddedRedis,
                                                     redis_client: redis.Redis) -> None:
    clip = _case("corrupt-packet") / "corrupt_middle.mp4"
    summary = run_replay(_config(tmp_path, redis_server.url), ReplayOptions(inputs=clip))
    assert summary.files_ok == 1 and summary.frames == 73
    assert summary.damaged_packets == 2 and len(summary.damaged_files) == 1
    events = _events(redis_client, "corrupt_middle")
    assert len(events) == summary.events_published >= 30
    assert max(e.frame_index for e in events) > 40, "frames after the damage are analysed"


def test_case_cut_off_recording_publishes_pending_tracks(tmp_path: Path,
                                                         redis_server: EmbeddedRedis,
                                                         redis_client: redis.Redis) -> None:
    source = _case("redis-stream-cases") / "clip.mp4"
    data = source.read_bytes()
    cut = tmp_path / "cut_clip.mp4"
    shutil.copy(source, cut)
    cut.write_bytes(data[: int(len(data) * 0.5)])
    summary = run_replay(_config(tmp_path, redis_server.url), ReplayOptions(inputs=cut))
    if summary.files_failed:  # an MP4 cut before its index cannot be opened at all
        assert summary.frames == 0
        return
    assert summary.frames > 10 and summary.events_published > 0
    assert len(_events(redis_client, "cut_clip")) == summary.events_published


def test_case_rotation_matches_upright(tmp_path: Path, redis_server: EmbeddedRedis,
                                       redis_client: redis.Redis) -> None:
    folder = _case("rotation-90")
    config = _config(tmp_path, redis_server.url)
    rotated = run_replay(config, ReplayOptions(inputs=folder / "rotated90.mp4"))
    upright = run_replay(config, ReplayOptions(inputs=folder / "upright_reference.mp4"))
    assert upright.faces_detected >= 150
    assert abs(rotated.faces_detected - upright.faces_detected) <= 0.1 * upright.faces_detected
    assert rotated.events_published >= 0.8 * upright.events_published
    boxes = [e.bbox_xyxy for e in _events(redis_client, "rotated90")]
    assert boxes and max(b[2] for b in boxes) > 360, "boxes are in the 640x360 displayed frame"


def test_rotated_frames_keep_their_geometry(tmp_path: Path) -> None:
    """A face-like blob stays where a player shows it after rotation (boxes in display px)."""
    img = np.zeros((120, 200, 3), np.uint8)
    cv2.circle(img, (150, 30), 12, (255, 255, 255), -1)
    coded = [np.ascontiguousarray(np.rot90(img, -1))] * 5  # coded sideways, display rot 90
    path = write_with_pts(tmp_path / "blob.mp4", coded, list(range(5)), rotation=90)
    frame = next(iter(replay_file(path)))
    ys, xs = np.nonzero(frame.image_bgr[:, :, 0] > 128)
    assert frame.size_wh == (200, 120)
    assert abs(xs.mean() - 150) < 3 and abs(ys.mean() - 30) < 3


def test_live_file_camera_turns_frames_upright(tmp_path: Path) -> None:
    import threading

    from pipeline.config import CameraConfig, SourceConfig
    from pipeline.queues import LatestQueue
    from pipeline.sources import SupervisedCamera

    upright = pattern_frames(10, 160, 96)
    coded = [np.ascontiguousarray(np.rot90(f, -1)) for f in upright]
    path = write_with_pts(tmp_path / "live_rot.mp4", coded, list(range(10)), rotation=90)
    queue: LatestQueue = LatestQueue(16)
    stop = threading.Event()
    camera = SupervisedCamera(CameraConfig(id="rot", url=str(path)), SourceConfig(), queue, stop)
    thread = threading.Thread(target=camera.run)
    thread.start()
    try:
        frame = queue.get(timeout=10)
    finally:
        stop.set()
        thread.join(timeout=10)
    assert frame.image_bgr.shape == upright[0].shape
    assert np.abs(frame.image_bgr.astype(int) - upright[frame.index % 10]).mean() < 6


def test_hardware_decode_falls_back_to_software_with_one_warning(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """hwaccel: cuda where no CUDA device can be opened (CPU machines, CI): the frames are
    decoded in software and the fallback is logged; on a GPU machine the device is used."""
    import av.codec.hwaccel

    path = write_with_pts(tmp_path / "hw.mp4", pattern_frames(10), list(range(10)))
    try:
        av.open(str(path), hwaccel=av.codec.hwaccel.HWAccel(device_type="cuda")).close()
        device_opens = True
    except (av.error.FFmpegError, OSError):
        device_opens = False
    frames = list(replay_file(path, hwaccel="cuda"))
    plain = list(replay_file(path))
    assert len(frames) == 10 and frames[0].image_bgr.shape == (96, 160, 3)
    for hw, sw in zip(frames, plain, strict=True):
        diff = np.abs(hw.image_bgr.astype(int) - sw.image_bgr).mean()
        # software fallback: the very same frames; a device: the same picture up to rounding
        assert diff < (2.0 if device_opens else 1e-9)
    fallbacks = [r.getMessage() for r in caplog.records if "hardware decoding" in r.getMessage()]
    assert len(fallbacks) == (0 if device_opens else 1)


def test_live_camera_stays_on_software_after_the_device_failed(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture
                                                               ) -> None:
    import threading

    import av.codec.hwaccel

    from pipeline.config import CameraConfig, SourceConfig
    from pipeline.queues import LatestQueue
    from pipeline.sources import SupervisedCamera

    try:
        av.open(str(write_with_pts(tmp_path / "probe.mp4", pattern_frames(3), [0, 1, 2])),
                hwaccel=av.codec.hwaccel.HWAccel(device_type="cuda")).close()
        pytest.skip("a CUDA device opens here: nothing falls back")
    except (av.error.FFmpegError, OSError):
        pass
    path = write_with_pts(tmp_path / "loop.mp4", pattern_frames(10), list(range(10)))
    queue: LatestQueue = LatestQueue(64)
    stop = threading.Event()
    camera = SupervisedCamera(CameraConfig(id="hw", url=str(path), hwaccel="cuda"),
                              SourceConfig(), queue, stop)
    thread = threading.Thread(target=camera.run)
    thread.start()
    try:
        deadline = time.monotonic() + 15
        while camera.health().frames_decoded < 25 and time.monotonic() < deadline:
            time.sleep(0.05)  # more than one pass: the file was reopened at least once
    finally:
        stop.set()
        thread.join(timeout=10)
    assert camera.health().frames_decoded >= 25 and camera.health().errors == 0
    fallbacks = [r for r in caplog.records if "hardware decoding (cuda) unavailable" in
                 r.getMessage()]
    assert len(fallbacks) == 1, "logged once, then the camera stays on software"
