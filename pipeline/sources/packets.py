"""The hook through which a source shows its encoded packets to someone else (the evidence
recorder's per-camera ring buffer), without the source knowing who listens.

Calls come from the decode thread, in demux order, and must be quick (no I/O): a
``stream_opened`` at each (re)connection or file, then ``packet`` for every packet read and
``frame_timed`` for every frame delivered, which ties the packets' presentation times to
the pipeline's stream time (``Frame.ts_ms``), and ``stream_closed`` when the connection or
file ends (for any reason).
"""

from __future__ import annotations

from typing import Protocol

import av
import av.video


class PacketObserver(Protocol):
    def stream_opened(self, stream: av.video.VideoStream) -> None:
        """A new connection or file: packets from here on belong to ``stream``."""

    def packet(self, packet: av.Packet) -> None:
        """One demuxed packet of the video stream (never the empty end-of-input packet)."""

    def frame_timed(self, pts_s: float | None, ts_ms: float) -> None:
        """The frame presented at ``pts_s`` (source seconds, pts * time_base) was delivered
        with stream time ``ts_ms``."""

    def stream_closed(self) -> None:
        """The connection or file ended: no packet follows until the next ``stream_opened``."""
