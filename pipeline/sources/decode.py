"""Opening inputs with PyAV and turning decoded frames into :class:`pipeline.records.Frame`.

Shared by live cameras and offline replay. Error messages never contain the URL that was
opened (it may hold credentials): callers pass the config URL to name the input.
"""

from __future__ import annotations

import time

import av
import av.container
import av.error
import av.video
import numpy as np

from pipeline.config import SourceConfig
from pipeline.errors import SourceError
from pipeline.records import Frame
from pipeline.secrets import mask_secrets
from pipeline.sources.urls import PermanentSourceError, SourceUrl

# These mean the input itself is wrong, so for a file retrying cannot help.
_PERMANENT_FOR_FILES = (av.error.FileNotFoundError, av.error.InvalidDataError,
                        av.error.PermissionError, av.error.IsADirectoryError)


def describe_av_error(err: BaseException) -> str:
    """Short reason text without the filename/URL that PyAV appends, secrets masked."""
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return mask_secrets(str(reason))


def demuxer_options(source_url: SourceUrl, source: SourceConfig) -> dict[str, str]:
    """FFmpeg demuxer options for this source: RTSP transport and, when set, the probe time
    (``analyzeduration`` in microseconds, with a ``probesize`` large enough not to cut it)."""
    if source_url.scheme not in ("rtsp", "rtsps"):
        return {}
    options = {"rtsp_transport": source.rtsp_transport}
    if source.rtsp_probe_s is not None:
        options["analyzeduration"] = str(round(source.rtsp_probe_s * 1_000_000))
        options["probesize"] = str(max(32_768, round(source.rtsp_probe_s * 4_000_000)))
    return options


def open_input(url: str, source_url: SourceUrl, source: SourceConfig,
               read_timeout_s: float | None,
               hwaccel: str = "none") -> av.container.InputContainer:
    """Open ``url`` (the connect URL) for reading; errors name ``source_url.display`` only.

    ``read_timeout_s`` bounds each blocking read: PyAV raises ``av.error.ExitError`` when no
    data arrives for that long, and the container stays usable for the next read.
    ``hwaccel`` (``cuda``, ``vaapi``, ``qsv``...) decodes on that device, frames downloaded to
    system memory; FFmpeg itself falls back to software for streams the device cannot decode,
    but a device that cannot be opened at all raises (see :func:`open_with_fallback`).
    """
    started = time.monotonic()
    extra = {}
    if hwaccel != "none":
        from av.codec.hwaccel import HWAccel

        extra["hwaccel"] = HWAccel(device_type=hwaccel, allow_software_fallback=True)
    try:
        container = av.open(url, mode="r", options=demuxer_options(source_url, source),
                            timeout=(source.open_timeout_s, read_timeout_s), **extra)
    except av.error.ProtocolNotFoundError as err:
        raise PermanentSourceError(f"cannot open {source_url.display}: protocol "
                                   f"{source_url.scheme!r} not supported by FFmpeg") from err
    except (av.error.FFmpegError, OSError) as err:
        # When the interrupt callback ends a slow open, FFmpeg may report it as invalid data
        # rather than as an exit request: the clock tells what really happened.
        if (isinstance(err, av.error.ExitError)
                or time.monotonic() - started >= source.open_timeout_s):
            raise SourceError(f"cannot open {source_url.display}: no answer within "
                              f"{source.open_timeout_s:g} s") from err
        permanent = source_url.kind == "file" and isinstance(err, _PERMANENT_FOR_FILES)
        error_type = PermanentSourceError if permanent else SourceError
        raise error_type(f"cannot open {source_url.display}: {describe_av_error(err)}") from err
    if not container.streams.video:
        container.close()
        raise PermanentSourceError(f"cannot open {source_url.display}: no video stream")
    return container


def open_with_fallback(url: str, source_url: SourceUrl, source: SourceConfig,
                       read_timeout_s: float | None,
                       hwaccel: str) -> tuple[av.container.InputContainer, str | None]:
    """:func:`open_input` with ``hwaccel``, and in software when that fails.

    Returns the container and, when the hardware open failed but the software one worked,
    the reason (the caller logs it once and stays on software). When both fail, the software
    error is raised: it is the one that says what is wrong with the input.
    """
    if hwaccel == "none":
        return open_input(url, source_url, source, read_timeout_s), None
    try:
        return open_input(url, source_url, source, read_timeout_s, hwaccel), None
    except SourceError as hw_err:
        container = open_input(url, source_url, source, read_timeout_s)
        return container, str(hw_err)


def frame_ts_s(frame: av.video.VideoFrame) -> float | None:
    """Presentation time in seconds from pts * time_base, or None when the stream has none."""
    if frame.pts is None or frame.time_base is None:
        return None
    return float(frame.pts * frame.time_base)


def display_rotation_deg(frame: av.video.VideoFrame) -> int:
    """Counter-clockwise rotation (0, 90, 180, 270) the container's display matrix asks for.

    Corridor-mode cameras, phones and body cameras code frames sideways and store the turn
    in the display matrix; players apply it, so the pipeline does too (``VideoFrame.rotation``,
    PyAV >= 14, reads the matrix; other angles are rounded to the nearest quarter turn).
    """
    rotation = getattr(frame, "rotation", 0) or 0
    return round(float(rotation) / 90.0) % 4 * 90


def to_bgr(frame: av.video.VideoFrame, apply_rotation: bool = True) -> np.ndarray:
    """BGR uint8 image of a decoded frame, turned upright as players show it.

    Boxes found on the result are in the displayed frame's coordinates.
    """
    image = frame.to_ndarray(format="bgr24")
    quarter_turns = display_rotation_deg(frame) // 90 if apply_rotation else 0
    if quarter_turns:
        image = np.ascontiguousarray(np.rot90(image, quarter_turns))
    return image


class DecodedFrame:
    """A decoded frame whose BGR image is made only when first read.

    A live camera decodes every frame but analysis takes only the newest when it is free
    (at 5 analysed fps from a 25 fps stream, four in five are dropped unread), so the
    colour conversion (:func:`to_bgr`, 0.66 ms for a 1080p frame on the 2-core dev machine)
    is paid only for frames that are used, on the thread that uses them, and queued frames
    hold the decoder's YUV (3 MB at 1080p) instead of BGR (6 MB). Same fields as
    :class:`pipeline.records.Frame`; :meth:`to_frame` gives one. Use it from one thread at a
    time (handed over through a queue).
    """

    __slots__ = ("_av_frame", "_image", "apply_rotation", "camera_id", "index", "segment",
                 "ts_ms", "wall_ts_s")

    def __init__(self, av_frame: av.video.VideoFrame, camera_id: str, index: int,
                 ts_ms: float, wall_ts_s: float, segment: int = 0,
                 apply_rotation: bool = True) -> None:
        self._av_frame: av.video.VideoFrame | None = av_frame
        self._image: np.ndarray | None = None
        self.apply_rotation = apply_rotation
        self.camera_id = camera_id
        self.index = index
        self.ts_ms = ts_ms
        self.wall_ts_s = wall_ts_s
        self.segment = segment

    @property
    def image_bgr(self) -> np.ndarray:
        """BGR uint8 ``(H, W, 3)``, upright (converted on first read, then kept)."""
        if self._image is None:
            self._image = to_bgr(self._av_frame, self.apply_rotation)
            self._av_frame = None  # the decoder's buffer goes back to its pool
        return self._image

    @property
    def size_wh(self) -> tuple[int, int]:
        """Width and height of :attr:`image_bgr` (upright), without converting."""
        if self._image is not None:
            return int(self._image.shape[1]), int(self._image.shape[0])
        width, height = int(self._av_frame.width), int(self._av_frame.height)
        turned = self.apply_rotation and display_rotation_deg(self._av_frame) in (90, 270)
        return (height, width) if turned else (width, height)

    def to_frame(self) -> Frame:
        return Frame(camera_id=self.camera_id, index=self.index, ts_ms=self.ts_ms,
                     image_bgr=self.image_bgr, wall_ts_s=self.wall_ts_s, segment=self.segment)


class StreamClock:
    """Seconds since the first frame, from pts * time_base, never going backwards.

    Frames without a pts (RTSP sends the first frame before its RTP clock is known) get the
    previous time plus one nominal frame interval, and the pts clock is aligned to them.

    A discontinuity (two recordings joined, a camera reboot, an MPEG-TS pts wrap-around, a
    corrupt jump) is a step back of more than two frame intervals or forward by more than
    ``max_gap_s``: time then continues one frame interval after the previous frame, the
    clock re-aligns to the new pts, and :attr:`last_jump_s` holds the jump (seconds, signed)
    for that frame so the caller can warn once and end its tracks. Smaller backward steps
    (reordering glitches) are clamped to just after the previous frame.
    """

    def __init__(self, stream: av.video.VideoStream, max_gap_s: float = 10.0) -> None:
        rate = stream.guessed_rate or stream.average_rate
        self.step_s = 1.0 / float(rate) if rate else 0.04
        self.max_gap_s = max_gap_s
        self.discontinuities = 0
        self.last_jump_s: float | None = None
        self._origin_s: float | None = None
        self._last_s: float | None = None

    def seconds(self, frame: av.video.VideoFrame) -> float:
        pts_s = frame_ts_s(frame)
        following_s = 0.0 if self._last_s is None else self._last_s + self.step_s
        self.last_jump_s = None
        if pts_s is None:
            now_s = following_s
        else:
            if self._origin_s is None:
                self._origin_s = pts_s - following_s
            now_s = pts_s - self._origin_s
            if self._last_s is not None:
                delta_s = now_s - self._last_s
                if delta_s < -2.0 * self.step_s or delta_s > self.max_gap_s:
                    self.last_jump_s = delta_s
                    self.discontinuities += 1
                    self._origin_s = pts_s - following_s
                    now_s = following_s
                elif delta_s <= 0.0:
                    now_s = self._last_s + 1e-6
        self._last_s = now_s
        return now_s
