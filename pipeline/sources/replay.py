"""Offline replay of recorded footage: every frame, in order, the same on every run.

A file input gives one file; a folder gives every video under it, sorted by path. Damaged
packets are skipped and counted, a file cut off part-way is analysed up to the cut, and both
are recorded in a :class:`DecodeReport` with a warning (an MPEG-TS file has no frame count in
its header, so a cut-off one is not flagged). A file that cannot be opened or yields no frame
raises a :class:`SourceError` naming it; :func:`replay_path` turns that into a per-file result
so a run carries on with the others.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import av.error

from pipeline.config import SourceConfig
from pipeline.errors import SourceError
from pipeline.sources.decode import (
    DecodedFrame,
    StreamClock,
    describe_av_error,
    display_rotation_deg,
    frame_ts_s,
    open_with_fallback,
)
from pipeline.sources.packets import PacketObserver
from pipeline.sources.urls import SourceUrl

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset({".mp4", ".mkv", ".avi", ".mov", ".ts", ".h264", ".m4v", ".webm"})
# Formats PyAV opens but that are stills or raw bitstreams of stills, not footage.
_IMAGE_FORMAT_MARKERS = ("image2", "_pipe", "gif", "apng")
_CAMERA_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class DecodeReport:
    """What decoding one file met (damage, an early end, timestamp jumps, a display
    rotation), filled in as :func:`replay_file` runs."""

    damaged_packets: int = 0
    timestamp_discontinuities: int = 0
    rotation_deg: int = 0
    ended_early: str | None = None  # truncated or unreadable tail: why the file stopped

    @property
    def damaged(self) -> bool:
        return bool(self.damaged_packets or self.ended_early)


@dataclass(frozen=True)
class ReplayFileResult:
    """What replaying one file gave: frames delivered, and the error if it stopped early."""

    path: Path
    camera_id: str
    frames_decoded: int
    elapsed_s: float
    error: str | None = None
    report: DecodeReport | None = None  # damaged packets, early end, discontinuities

    @property
    def ok(self) -> bool:
        return self.error is None


def camera_id_for(path: Path) -> str:
    """A camera id (config pattern ``[A-Za-z0-9_.-]{1,64}``) derived from a file name."""
    return (_CAMERA_ID_UNSAFE.sub("_", path.stem).strip("_") or "file")[:64]


def _is_openable_video(path: Path) -> bool:
    """Probe a file with an unknown extension: a video PyAV can open, not a still image."""
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                return False
            name = container.format.name
            return not any(marker in name for marker in _IMAGE_FORMAT_MARKERS)
    except (av.error.FFmpegError, OSError):
        return False


def list_videos(input_path: Path | str) -> list[Path]:
    """Files to replay: ``input_path`` itself, or every video under a folder, sorted.

    Files with a known video extension are always listed (so a corrupt one is reported,
    not silently skipped); other files are listed when PyAV opens them as video.
    """
    input_path = Path(input_path)
    if input_path.is_file():
        return [input_path]
    if not input_path.is_dir():
        raise SourceError(f"replay input {input_path} does not exist")
    videos = []
    for path in sorted(p for p in input_path.rglob("*") if p.is_file()):
        if any(part.startswith(".") for part in path.relative_to(input_path).parts):
            continue
        if path.suffix.lower() in VIDEO_EXTENSIONS or _is_openable_video(path):
            videos.append(path)
    return videos


def replay_file(path: Path | str, *, camera_id: str | None = None, realtime: bool = False,
                stop_event: threading.Event | None = None,
                source: SourceConfig | None = None,
                report: DecodeReport | None = None, hwaccel: str = "none",
                packets: PacketObserver | None = None) -> Iterator[DecodedFrame]:
    """Yield every frame of one file: index 0, 1, 2...; ``ts_ms`` from pts, starting at 0.

    Frames are :class:`~pipeline.sources.decode.DecodedFrame`: the BGR image is made when
    first read (analysis reads it only on detection passes).

    Stream time never goes backwards: a timestamp discontinuity (restart, wrap-around, a
    jump beyond ``source.max_timestamp_gap_s``) is logged once with its size and time
    continues one frame later (later frames have a higher ``segment``). Damaged packets are
    skipped and counted; a file that is cut off or unreadable part-way ends with the frames
    decoded so far and a warning. Frames are turned upright by the display matrix. All of
    it is recorded in ``report``. ``realtime`` paces delivery so frame ``ts_ms`` matches a
    monotonic clock started at the first frame; ``stop_event`` stops early without error.
    ``hwaccel`` decodes on a device (``cuda``...), in software when it cannot be opened.
    ``packets``, if given, sees every packet read and each frame's stream time (evidence).

    Raises:
        SourceError: naming the file, when it cannot be opened or no frame decodes.
    """
    path = Path(path)
    camera_id = camera_id or camera_id_for(path)
    source = source or SourceConfig()
    report = report if report is not None else DecodeReport()
    source_url = SourceUrl(kind="file", scheme="file", target=str(path), display=str(path))
    container, hw_failure = open_with_fallback(str(path), source_url, source, None, hwaccel)
    if hw_failure is not None:
        log.warning("%s: hardware decoding (%s) unavailable, decoding in software: %s", path,
                    hwaccel, hw_failure)
    try:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame threads: fine offline, output order is unchanged
        expected_frames = int(stream.frames or 0)
        clock = StreamClock(stream, source.max_timestamp_gap_s)
        index = 0
        started = time.monotonic()
        if packets is not None:
            packets.stream_opened(stream)
        for av_frame in _decode_skipping_damage(container, stream, path, report, packets):
            ts_ms = 1000.0 * clock.seconds(av_frame)
            if packets is not None:
                packets.frame_timed(frame_ts_s(av_frame), ts_ms)
            if clock.last_jump_s is not None:
                report.timestamp_discontinuities += 1
                log.warning("%s: timestamps jump %+.3f s at frame %d (discontinuity %d); "
                            "stream time continues at %.3f s and open tracks end", path,
                            clock.last_jump_s, index, clock.discontinuities, ts_ms / 1000.0)
            if index == 0:
                report.rotation_deg = display_rotation_deg(av_frame)
                if report.rotation_deg and source.apply_display_rotation:
                    log.info("%s: display matrix rotates frames by %d degrees; analysing "
                             "them upright", path, report.rotation_deg)
            if realtime and _wait_until(started + ts_ms / 1000.0, stop_event):
                return
            if stop_event is not None and stop_event.is_set():
                return
            yield DecodedFrame(av_frame, camera_id, index, ts_ms, time.time(),
                               clock.discontinuities, source.apply_display_rotation)
            index += 1
        if index == 0:
            raise SourceError(f"{path}: no frame could be decoded"
                              + (f" ({report.ended_early})" if report.ended_early else ""))
        if (expected_frames and index + report.damaged_packets < expected_frames
                and report.ended_early is None):
            report.ended_early = (f"truncated: decoded {index} of the {expected_frames} "
                                  f"frames its header lists")
        if report.damaged:
            log.warning("%s: damaged file: %d damaged packets skipped%s; %d frames analysed",
                        path, report.damaged_packets,
                        f", {report.ended_early}" if report.ended_early else "", index)
    finally:
        if packets is not None:
            packets.stream_closed()
        container.close()


def _decode_skipping_damage(container: av.container.InputContainer, stream: av.VideoStream,
                            path: Path, report: DecodeReport,
                            observer: PacketObserver | None = None) -> Iterator[av.VideoFrame]:
    """Decode packet by packet: a packet the decoder refuses is counted and skipped; a read
    error ends the file early (recorded in ``report``) instead of discarding it."""
    packets = container.demux(stream)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except (av.error.FFmpegError, OSError) as err:
            report.ended_early = f"unreadable after this point: {describe_av_error(err)}"
            break
        if observer is not None and packet.size:
            observer.packet(packet)
        try:
            frames = packet.decode()
        except av.error.InvalidDataError as err:
            report.damaged_packets += 1
            log.debug("%s: damaged packet skipped: %s", path, describe_av_error(err))
            continue
        except (av.error.FFmpegError, OSError) as err:
            report.ended_early = f"decoding failed: {describe_av_error(err)}"
            break
        yield from frames
    try:  # drain the decoder's delayed frames after a read error
        yield from stream.codec_context.decode(None)
    except (av.error.FFmpegError, OSError):
        return


def _wait_until(deadline: float, stop_event: threading.Event | None) -> bool:
    """Sleep until the monotonic ``deadline``; True when stopped while waiting."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        return False
    if stop_event is None:
        time.sleep(remaining)
        return False
    return stop_event.wait(remaining)


def replay_path(input_path: Path | str, on_frame: Callable[[DecodedFrame], None], *,
                realtime: bool = False, stop_event: threading.Event | None = None,
                camera_id: str | None = None,
                source: SourceConfig | None = None) -> Iterator[ReplayFileResult]:
    """Replay a file or folder, calling ``on_frame`` for every frame (e.g. a BlockingQueue's
    ``put``), and yield one :class:`ReplayFileResult` per file. A bad file gives a result
    with ``error`` set and the next file is replayed; ``camera_id`` defaults to the file
    name. Exceptions from ``on_frame`` (e.g. QueueClosed at shutdown) propagate.
    """
    for path in list_videos(input_path):
        if stop_event is not None and stop_event.is_set():
            return
        file_camera_id = camera_id or camera_id_for(path)
        started = time.monotonic()
        count = 0
        error = None
        report = DecodeReport()
        try:
            for frame in replay_file(path, camera_id=file_camera_id, realtime=realtime,
                                     stop_event=stop_event, source=source, report=report):
                on_frame(frame)
                count += 1
        except SourceError as err:
            error = str(err)
            log.warning("replay: %s", error)
        yield ReplayFileResult(path=path, camera_id=file_camera_id, frames_decoded=count,
                               elapsed_s=time.monotonic() - started, error=error,
                               report=report)
