"""Cutting a window out of a camera's ring buffer and writing it as MP4 by stream copy.

No re-encoding: the camera's own H.264/H.265 packets go into an MP4 track made from the
stream's codec parameters (``add_stream_from_template``). FFmpeg's MP4 muxer turns Annex-B
extradata and packets (as RTSP delivers them) into the ``avcC`` form MP4 players expect, and
takes in-band SPS/PPS when the stream had no extradata. Timestamps are rebased so the clip
starts at 0; the clip starts on a keyframe, so it plays in ordinary players.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import av
import av.error
import numpy as np

from pipeline.errors import EvidenceError
from pipeline.evidence.ring import RingPacket, RingView, StreamTemplate
from pipeline.sources.decode import to_bgr

_TOLERANCE_MS = 1.0  # stream times are float sums: 8560 may arrive as 8559.999999999998


@dataclass(frozen=True)
class ClipWindow:
    """Packets from the last keyframe at or before the requested start to the last packet
    at or before the requested end; ``start_ms``/``end_ms`` are what they cover (stream
    time of the first and the last frame)."""

    template: StreamTemplate
    packets: tuple[RingPacket, ...]
    start_ms: float
    end_ms: float

    @property
    def frames(self) -> int:
        return len(self.packets)


def cut_window(view: RingView, start_ms: float, end_ms: float) -> ClipWindow | None:
    """The part of ``view`` covering ``[start_ms, end_ms]`` as closely as keyframes allow:
    it starts on the last keyframe at or before ``start_ms`` (the first keyframe held when
    the ring no longer reaches back that far). None when no timed keyframe is held before
    ``end_ms``."""
    start_ms, end_ms = start_ms + _TOLERANCE_MS, end_ms + _TOLERANCE_MS
    first = None
    for i, (packet, ts) in enumerate(zip(view.packets, view.ts_ms, strict=True)):
        if ts > end_ms:
            break
        if packet.is_keyframe and (first is None or ts <= start_ms):
            first = i
    if first is None:
        return None
    last = first
    while last + 1 < len(view.packets) and view.ts_ms[last + 1] <= end_ms:
        last += 1
    return ClipWindow(view.segment.template, view.packets[first:last + 1],
                      view.ts_ms[first], view.ts_ms[last])


def write_clip(window: ClipWindow) -> bytes:
    """The window as an MP4 file (bytes). Raises EvidenceError when muxing fails."""
    buffer = io.BytesIO()
    where = "opening the output"
    try:
        with av.open(buffer, mode="w", format="mp4") as output:
            stream = output.add_stream_from_template(window.template.stream)
            first = window.packets[0]
            base = first.dts if first.dts is not None else first.pts
            last_dts = None
            for i, item in enumerate(window.packets):
                dts = (item.dts if item.dts is not None else item.pts) - base
                if last_dts is not None and dts <= last_dts:
                    # MP4 needs strictly increasing dts; RTP can give two packets one time
                    dts = last_dts + 1
                packet = av.Packet(item.data)
                packet.pts, packet.dts = max(item.pts - base, dts), dts
                if item.duration:
                    packet.duration = item.duration
                packet.is_keyframe = item.is_keyframe
                packet.time_base = window.template.time_base
                packet.stream = stream
                where = f"packet {i} (pts {packet.pts}, dts {dts}, previous dts {last_dts})"
                output.mux(packet)
                last_dts = dts
            where = "closing the file"
    except (av.error.FFmpegError, OSError, ValueError) as err:
        raise EvidenceError(f"writing a {window.frames}-packet clip failed at {where}: "
                            f"{err}") from err
    return buffer.getvalue()


def frame_at(clip_mp4: bytes, offset_ms: float) -> np.ndarray:
    """The BGR frame of ``clip_mp4`` shown at ``offset_ms`` from its start (the last frame
    presented at or before it), upright as players show it. Raises EvidenceError."""
    chosen = None
    try:
        with av.open(io.BytesIO(clip_mp4), mode="r") as container:
            for frame in container.decode(video=0):
                if chosen is not None and (frame.time or 0.0) * 1000.0 > offset_ms + 0.5:
                    break
                chosen = frame
            if chosen is None:
                raise EvidenceError("the clip holds no decodable frame")
            return to_bgr(chosen)
    except (av.error.FFmpegError, OSError) as err:
        raise EvidenceError(f"decoding the clip for a snapshot failed: {err}") from err
