"""The packet ring and the stream-copy clip writer on real PyAV media: packets on the same
timeline as frames, eviction by seconds and bytes from keyframes, a new segment at a pts
jump, clips that decode and cover the requested window to within one GOP."""

from __future__ import annotations

import io
import itertools
import time
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.evidence.clip import cut_window, frame_at, write_clip
from pipeline.evidence.ring import PacketRing
from pipeline.sources import replay_file
from tests.helpers.media import encode_clip, moving_square_frames

FPS = 25
GOP = 10


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s, 160x120, a keyframe at least every 10 frames, each frame's index drawn as its
    mean brightness so a decoded frame can be matched to its source frame."""
    frames = moving_square_frames(4 * FPS)
    for i, image in enumerate(frames):
        image[:, :8] = 2 * i  # a left stripe whose brightness encodes the frame index
    return encode_clip(tmp_path_factory.mktemp("ev") / "clip.mp4", frames, fps=FPS, gop=GOP)


def _fill(clip: Path, ring: PacketRing) -> list[float]:
    return [frame.ts_ms for frame in replay_file(clip, packets=ring)]


def _max_gop_ms(ts_ms: tuple[float, ...], keys: list[bool]) -> float:
    key_ts = [t for t, k in zip(ts_ms, keys, strict=True) if k] + [ts_ms[-1] + 1000 / FPS]
    return max(b - a for a, b in itertools.pairwise(key_ts))


def test_packets_share_the_frames_timeline(clip: Path) -> None:
    ring = PacketRing("cam", max_s=60, max_bytes=64 << 20)
    frame_ts = _fill(clip, ring)
    view = ring.view(ring.current())
    assert view.closed, "the end of the file closes the segment"
    assert view.packets[0].is_keyframe
    assert list(view.ts_ms) == pytest.approx(frame_ts)


@pytest.mark.parametrize(("start_ms", "end_ms"), [(1000.0, 2500.0), (0.0, 800.0),
                                                  (2900.0, 9000.0)])
def test_clip_decodes_and_covers_the_window_within_one_gop(clip: Path, start_ms: float,
                                                           end_ms: float) -> None:
    ring = PacketRing("cam", max_s=60, max_bytes=64 << 20)
    _fill(clip, ring)
    view = ring.view(ring.current())
    gop_ms = _max_gop_ms(view.ts_ms, [p.is_keyframe for p in view.packets])
    assert gop_ms <= GOP * 1000 / FPS

    window = cut_window(view, start_ms, end_ms)
    started = time.perf_counter()
    data = write_clip(window)
    write_ms = 1000 * (time.perf_counter() - started)

    assert window.packets[0].is_keyframe
    assert start_ms - gop_ms < window.start_ms <= start_ms
    assert window.end_ms == pytest.approx(min(end_ms, view.ts_ms[-1]), abs=1000 / FPS)
    assert data[4:8] == b"ftyp"
    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and container.format.name.startswith("mov")
        frames = list(container.decode(stream))
    assert len(frames) == window.frames
    assert frames[0].time == pytest.approx(0.0)
    assert frames[-1].time == pytest.approx((window.end_ms - window.start_ms) / 1000, abs=1e-3)
    # the first decoded frame is the source frame at the window start (stripe = 2 * index)
    first_index = round(window.start_ms * FPS / 1000)
    stripe = frames[0].to_ndarray(format="bgr24")[:, :8].mean()
    assert stripe == pytest.approx(2 * first_index, abs=3)
    assert write_ms < 500, f"stream copy of {window.frames} packets took {write_ms:.0f} ms"


def test_frame_at_picks_the_frame_shown_at_that_moment(clip: Path) -> None:
    ring = PacketRing("cam", max_s=60, max_bytes=64 << 20)
    _fill(clip, ring)
    window = cut_window(ring.view(ring.current()), 1000.0, 3000.0)
    data = write_clip(window)
    target_ms = 1720.0
    image = frame_at(data, target_ms - window.start_ms)
    expected_index = int(target_ms * FPS / 1000)
    assert image.shape == (120, 160, 3)
    assert image[:, :8].mean() == pytest.approx(2 * expected_index, abs=3)


def test_ring_evicts_by_seconds_and_bytes_from_a_keyframe(clip: Path) -> None:
    by_time = PacketRing("cam", max_s=1.0, max_bytes=64 << 20)
    _fill(clip, by_time)
    view = by_time.view(by_time.current())
    assert view.packets[0].is_keyframe
    assert view.ts_ms[-1] - view.ts_ms[0] <= 1000.0
    assert view.ts_ms[-1] == pytest.approx(4000.0 - 1000 / FPS)

    total = sum(len(p.data) for p in by_time.view(by_time.current()).packets)
    by_size = PacketRing("cam", max_s=60, max_bytes=total // 2)
    _fill(clip, by_size)
    packets = by_size.view(by_size.current()).packets
    assert packets[0].is_keyframe and sum(len(p.data) for p in packets) <= total // 2


def test_a_pts_jump_or_reopen_starts_a_new_segment(clip: Path) -> None:
    ring = PacketRing("cam", max_s=60, max_bytes=64 << 20, max_gap_s=5.0)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        ring.stream_opened(stream)
        packets = [p for p in container.demux(stream) if p.size]
        for packet in packets[:GOP * 2]:
            ring.packet(packet)
        first = ring.current()
        ring.frame_timed(float(packets[0].pts * stream.time_base), 0.0)
        for packet in packets[GOP * 2:]:  # the rest, 100 s later: a discontinuity
            packet.pts += int(100 / stream.time_base)
            packet.dts += int(100 / stream.time_base)
            ring.packet(packet)
        second = ring.current()
    assert second is not first and first.closed and not second.closed
    assert len(ring.view(first).packets) == GOP * 2
    assert second.offset_ms is None, "a late frame of the old segment must not time the new"
    ring.frame_timed(second.packets[0].pts_s, 5000.0)  # (the segment starts on a keyframe)
    view = ring.view(second)
    assert view.packets[0].is_keyframe and view.ts_ms[0] == pytest.approx(5000.0)
    assert np.all(np.diff(view.ts_ms) > 0)


def test_packets_without_timestamps_before_the_first_timed_one_are_kept(clip: Path) -> None:
    """RTSP delivers its first packet (SPS, PPS and the IDR) before the RTP clock is known:
    no pts, no dts. It is timed one frame before the next packet, so the first GOP is not
    lost."""
    ring = PacketRing("cam", max_s=60, max_bytes=64 << 20)
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        ring.stream_opened(stream)
        packets = [p for p in container.demux(stream) if p.size]
        step = packets[1].pts - packets[0].pts
        packets[0].pts = packets[0].dts = None
        for packet in packets:
            ring.packet(packet)
        ring.frame_timed(float(packets[1].pts * stream.time_base), 40.0)
    view = ring.view(ring.current())
    assert len(view.packets) == len(packets) and view.packets[0].is_keyframe
    assert view.packets[0].pts == packets[1].pts - step
    assert view.ts_ms[:2] == pytest.approx((0.0, 40.0))
