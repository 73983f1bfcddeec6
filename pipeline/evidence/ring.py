"""Per-camera ring buffer of encoded video packets, as a video management system's "smart
record" keeps them: no decoding, no re-encoding, bounded by seconds and bytes.

The camera's decode thread feeds it through :class:`~pipeline.sources.packets.PacketObserver`
(``stream_opened``, ``packet``, ``frame_timed``); the evidence worker reads windows of it.
Packets are kept as immutable :class:`RingPacket` copies, so a reader never shares a PyAV
packet with the decoder.

Timeline: a packet's ``ts_ms`` is on the pipeline's stream time (``Frame.ts_ms``, event and
alert ``ts_ms``). Within one :class:`Segment` (one connection, or one file, with no timestamp
jump) stream time is the packet's presentation time plus a fixed offset, learnt from the
first delivered frame whose pts falls in the segment (``frame_timed``). A reconnection or a
jump in the packets' pts (more than two frame steps back, or more than ``max_gap_s``
forward) starts a new segment: a clip never spans one, because the packets on either side
need not fit one MP4 track.

Eviction: whole packets from the front while the segment spans more than ``max_s`` seconds
or holds more than ``max_bytes``, then up to the next keyframe, so a segment always starts
on a keyframe and any window can be cut from a keyframe.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from dataclasses import dataclass, field
from fractions import Fraction

import av
import av.video


@dataclass(frozen=True)
class RingPacket:
    """One encoded packet. ``pts``/``dts``/``duration`` are in the segment's ``time_base``;
    ``pts_s`` is the presentation time in source seconds; ``seq`` counts packets per ring."""

    seq: int
    data: bytes = field(repr=False)
    pts: int
    dts: int | None
    duration: int | None
    is_keyframe: bool
    pts_s: float


class StreamTemplate:
    """The codec parameters of a segment's stream (SPS/PPS extradata, size, time base),
    copied out of the input container so clips can be written after it is closed.

    It holds an unstarted in-memory MP4 output whose only stream was made with
    ``add_stream_from_template``: PyAV copies the codec parameters into a stream of its own,
    which later clips use as their template in turn. Read-only once made.
    """

    def __init__(self, stream: av.video.VideoStream) -> None:
        self.time_base: Fraction = stream.time_base or Fraction(1, 90_000)
        rate = stream.guessed_rate or stream.average_rate
        self.step_s = 1.0 / float(rate) if rate else 0.04
        self.codec_name = stream.codec_context.name
        self.size_wh = (int(stream.codec_context.width), int(stream.codec_context.height))
        self._holder = av.open(io.BytesIO(), mode="w", format="mp4")
        self.stream = self._holder.add_stream_from_template(stream)


class Segment:
    """Packets of one connection (or file) without a timestamp jump; see the module doc.
    Mutated only under its ring's lock."""

    def __init__(self, number: int, template: StreamTemplate) -> None:
        self.number = number
        self.template = template
        self.packets: deque[RingPacket] = deque()
        self.bytes = 0
        self.offset_ms: float | None = None  # stream time = 1000 * pts_s + offset_ms
        self.closed = False  # no packet will be added: the camera reconnected or stopped

    def ts_ms(self, packet: RingPacket) -> float | None:
        return None if self.offset_ms is None else 1000.0 * packet.pts_s + self.offset_ms


@dataclass(frozen=True)
class RingView:
    """A consistent copy of a segment's packets, with their stream times (ms)."""

    segment: Segment
    packets: tuple[RingPacket, ...]
    ts_ms: tuple[float, ...]
    closed: bool

    @property
    def last_ts_ms(self) -> float | None:
        return self.ts_ms[-1] if self.ts_ms else None


class PacketRing:
    """One camera's ring buffer; the decode thread writes, any thread reads."""

    def __init__(self, camera_id: str, max_s: float, max_bytes: int,
                 max_gap_s: float = 10.0) -> None:
        if max_s <= 0 or max_bytes <= 0:
            raise ValueError(f"ring limits: expected > 0, got {max_s} s and {max_bytes} bytes")
        self.camera_id = camera_id
        self.max_s = max_s
        self.max_bytes = max_bytes
        self.max_gap_s = max_gap_s
        self._lock = threading.Lock()
        self._segment: Segment | None = None
        self._segments = 0
        self._seq = 0
        self._template: StreamTemplate | None = None
        self._last_pts_s: float | None = None
        self._last_pts: int | None = None
        # packets without a timestamp before the first one with it: (data, duration, key)
        self._untimed: list[tuple[bytes, int | None, bool]] = []

    # -- PacketObserver (decode thread) ------------------------------------------------------
    def stream_opened(self, stream: av.video.VideoStream) -> None:
        template = StreamTemplate(stream)
        with self._lock:
            self._template = template
            self._untimed = []
            self._new_segment()

    def packet(self, packet: av.Packet) -> None:
        pts = packet.pts if packet.pts is not None else packet.dts
        with self._lock:
            segment, template = self._segment, self._template
            if segment is None or template is None:
                return  # no stream yet
            step = max(1, round(template.step_s / template.time_base))
            raw = (bytes(packet), packet.duration, bool(packet.is_keyframe))
            if pts is None:  # RTSP sends its first packets before the RTP clock is known
                if self._last_pts is None:
                    self._untimed.append(raw)
                    return
                pts = self._last_pts + step
            pending, self._untimed = self._untimed, []
            for back, (data, duration, key) in zip(range(len(pending), 0, -1), pending,
                                                    strict=True):
                self._add(pts - back * step, None, data, duration, key)
            self._add(int(pts), packet.dts, *raw)

    def _add(self, pts: int, dts: int | None, data: bytes, duration: int | None,
             is_keyframe: bool) -> None:
        """Append one packet to the current segment (under the lock); see the module doc."""
        template, segment = self._template, self._segment
        if template is None or segment is None:
            return
        pts_s = float(pts * template.time_base)
        last = self._last_pts_s
        if last is not None and (pts_s < last - 2 * template.step_s
                                 or pts_s > last + self.max_gap_s):
            segment = self._new_segment()
        self._last_pts_s, self._last_pts = pts_s, pts
        self._seq += 1
        if not segment.packets and not is_keyframe:
            return  # a segment starts on a keyframe
        segment.packets.append(RingPacket(self._seq, data, pts, dts, duration, is_keyframe,
                                          pts_s))
        segment.bytes += len(data)
        self._evict(segment)

    def frame_timed(self, pts_s: float | None, ts_ms: float) -> None:
        if pts_s is None:
            return
        with self._lock:
            segment = self._segment
            if segment is None or segment.offset_ms is not None or not segment.packets:
                return
            step_s = segment.template.step_s
            # a frame decoded late from the previous segment must not set this one's clock
            if segment.packets[0].pts_s - step_s <= pts_s <= segment.packets[-1].pts_s + step_s:
                segment.offset_ms = ts_ms - 1000.0 * pts_s

    # -- readers -----------------------------------------------------------------------------
    def stream_closed(self) -> None:
        """The connection or file ended: the segment is complete."""
        self.close()

    def close(self) -> None:
        """The source stopped (end of file, camera stopped): the segment is complete."""
        with self._lock:
            if self._segment is not None:
                self._segment.closed = True
            self._last_pts_s = self._last_pts = None
            self._untimed = []

    def current(self) -> Segment | None:
        with self._lock:
            return self._segment

    def reached(self, segment: Segment) -> tuple[float | None, bool]:
        """Stream time (ms) of the segment's latest timed packet, and whether it ended."""
        with self._lock:
            if not segment.packets:
                return None, segment.closed
            return segment.ts_ms(segment.packets[-1]), segment.closed

    def view(self, segment: Segment) -> RingView:
        """The timed packets ``segment`` holds now (packets before its clock is known are
        left out)."""
        with self._lock:
            packets = tuple(segment.packets)
            closed = segment.closed
            offset = segment.offset_ms
        if offset is None:
            return RingView(segment, (), (), closed)
        return RingView(segment, packets, tuple(1000.0 * p.pts_s + offset for p in packets),
                        closed)

    def _new_segment(self) -> Segment:
        if self._segment is not None:
            self._segment.closed = True
        self._segments += 1
        self._segment = Segment(self._segments, self._template)  # type: ignore[arg-type]
        self._last_pts_s = self._last_pts = None
        return self._segment

    def _evict(self, segment: Segment) -> None:
        packets = segment.packets

        def over() -> bool:
            return (packets[-1].pts_s - packets[0].pts_s > self.max_s
                    or segment.bytes > self.max_bytes)

        if not over():
            return
        while packets and over():
            segment.bytes -= len(packets.popleft().data)
        while packets and not packets[0].is_keyframe:
            segment.bytes -= len(packets.popleft().data)
