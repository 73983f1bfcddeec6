"""A supervised live camera: open, decode, push the newest frame; on any failure close, back
off with jitter and reconnect, until stopped. The runner calls :meth:`SupervisedCamera.run`
in a thread it owns; each camera has its own loop, so a dead camera never affects others.

Timeouts:
- open: ``source.open_timeout_s`` for the whole connect (PyAV interrupt callback);
- read: every blocking read returns after at most ``STOP_POLL_S`` (PyAV read timeout), so
  the stop event is seen promptly; ``read_timeout_s`` without any packet is a failure;
- stall: ``stall_timeout_s`` without a decoded frame (packets may still arrive) is a failure.

A file URL is treated as a camera simulator: paced in real time and looped at its end.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time

import av
import av.container
import av.error

from pipeline.config import CameraConfig, SourceConfig
from pipeline.errors import ConfigError, SourceError
from pipeline.queues import LatestQueue, QueueClosed
from pipeline.secrets import mask_secrets
from pipeline.sources.backoff import Backoff
from pipeline.sources.decode import (
    DecodedFrame,
    StreamClock,
    describe_av_error,
    display_rotation_deg,
    frame_ts_s,
    open_with_fallback,
)
from pipeline.sources.health import CameraHealth, CameraState, HealthTracker
from pipeline.sources.packets import PacketObserver
from pipeline.sources.urls import PermanentSourceError, connect_url, parse_source_url

log = logging.getLogger(__name__)

STOP_POLL_S = 0.5


class _EndOfFile(Exception):  # a control-flow signal, not an error
    """A file camera reached its end: reopen at once (loop), no backoff, no error."""


class SupervisedCamera:
    """One camera's decode loop. ``out`` should be this camera's own queue; it receives
    :class:`~pipeline.sources.decode.DecodedFrame` items, converted to BGR only when read.
    ``packets``, if given, sees every encoded packet (the evidence ring buffer)."""

    def __init__(self, camera: CameraConfig, source: SourceConfig,
                 out: LatestQueue[DecodedFrame], stop_event: threading.Event,
                 rng: random.Random | None = None, packets: PacketObserver | None = None) -> None:
        self.camera = camera
        self._packets = packets
        self.source = source
        self.out = out
        self.stop_event = stop_event
        try:
            self.source_url = parse_source_url(camera.url)
        except PermanentSourceError as err:
            raise PermanentSourceError(f"camera {camera.id}: {err}") from err
        self._backoff = Backoff(source.reconnect, rng)
        self._health = HealthTracker(camera.id, self.source_url.display)
        self._read_poll_s = min(STOP_POLL_S, source.read_timeout_s, source.stall_timeout_s)
        self._next_index = 0
        self._last_ts_ms: float | None = None
        self._segment = 0  # see Frame.segment
        self._hwaccel = camera.hwaccel  # "none" after the device failed once
        self._last_ts_monotonic = 0.0

    @property
    def camera_id(self) -> str:
        return self.camera.id

    def health(self) -> CameraHealth:
        return self._health.snapshot()

    def run(self) -> None:
        """Blocking supervision loop; returns when ``stop_event`` is set, the output queue is
        closed, or a permanent error (bad URL, missing file or credentials) marks it FAILED."""
        after_failure = False
        try:
            while not self.stop_event.is_set():
                if after_failure:
                    self._health.reconnecting()
                after_failure = True
                try:
                    self._stream_once()
                except _EndOfFile:
                    after_failure = False
                    # the replayed recording starts again: a new segment, so tracks from the
                    # end of the file do not continue into its beginning (as in replay)
                    self._segment += 1
                    log.info("camera %s: end of %s, looping", self.camera_id,
                             self.source_url.display)
                    continue
                except (PermanentSourceError, ConfigError) as err:
                    self._fail(err)
                    return
                except QueueClosed:
                    return
                except SourceError as err:
                    self._record_error(str(err))
                except Exception as err:  # isolate bugs to this camera
                    self._record_error(f"unexpected {type(err).__name__}: {err}", exc=err)
                if self.stop_event.is_set():
                    return
                self._health.set_state(CameraState.RECONNECTING)
                delay_s = self._backoff.next_delay_s()
                log.info("camera %s: reconnecting in %.2f s", self.camera_id, delay_s)
                self.stop_event.wait(delay_s)
        finally:
            if self._health.state is not CameraState.FAILED:
                self._health.set_state(CameraState.STOPPED)

    def _fail(self, err: Exception) -> None:
        text = mask_secrets(f"camera {self.camera_id}: {err}")
        self._health.error(text)
        self._health.set_state(CameraState.FAILED)
        log.error("%s; giving up on this camera", text)

    def _record_error(self, text: str, exc: Exception | None = None) -> None:
        text = mask_secrets(text if text.startswith("camera ") else
                            f"camera {self.camera_id}: {text}")
        self._health.error(text)
        if exc is None:
            log.warning("%s", text)
        else:
            log.error("%s", text, exc_info=exc)

    def _stream_once(self) -> None:
        """One connection: returns when stopped; raises on any failure."""
        self._health.set_state(CameraState.CONNECTING)
        url = connect_url(self.camera, self.source_url)
        log.info("camera %s: connecting to %s", self.camera_id, self.source_url.display)
        log.debug("camera %s: opening %s", self.camera_id, mask_secrets(url))
        container = self._open_interruptibly(url)
        if container is None:  # stopped while connecting
            return
        try:
            self._read(container)
        finally:
            if self._packets is not None:
                self._packets.stream_closed()
            with contextlib.suppress(av.error.FFmpegError, OSError):
                container.close()

    def _open_interruptibly(self, url: str) -> av.container.InputContainer | None:
        """Open in a short-lived helper thread so that stop is prompt even while a hung
        server holds the open for up to ``open_timeout_s``. A container that arrives after
        stop is closed by the helper itself."""
        lock = threading.Lock()
        outcome: dict[str, object] = {}
        abandoned = False

        def open_now() -> None:
            try:
                container, hw_failure = open_with_fallback(
                    url, self.source_url, self.source, self._read_poll_s, self._hwaccel)
                if hw_failure is not None:
                    log.warning("camera %s: hardware decoding (%s) unavailable, decoding in "
                                "software from now on: %s", self.camera_id, self._hwaccel,
                                hw_failure)
                    self._hwaccel = "none"
            except BaseException as err:  # handed to the camera thread below
                outcome["error"] = err
                return
            with lock:
                if not abandoned:
                    outcome["container"] = container
                    return
            with contextlib.suppress(av.error.FFmpegError, OSError):
                container.close()

        opener = threading.Thread(target=open_now, name=f"open-{self.camera_id}", daemon=True)
        opener.start()
        while opener.is_alive():
            opener.join(STOP_POLL_S)
            if self.stop_event.is_set():
                with lock:
                    if "container" not in outcome:
                        abandoned = True
                        return None
        if "error" in outcome:
            raise outcome["error"]  # type: ignore[misc]
        return outcome["container"]  # type: ignore[return-value]

    def _read(self, container: av.container.InputContainer) -> None:
        stream = container.streams.video[0]
        is_file = self.source_url.kind == "file"
        clock = StreamClock(stream, self.source.max_timestamp_gap_s)
        opened = time.monotonic()
        rotation_logged = False
        last_packet = last_frame = opened
        frames_here = 0
        ts_base_ms = self._ts_base_ms(opened)
        if self._packets is not None:
            self._packets.stream_opened(stream)
        while not self.stop_event.is_set():
            try:
                for packet in container.demux(stream):
                    now = time.monotonic()
                    if self.stop_event.is_set():
                        return
                    if packet.size:  # size 0 is the end-of-input flush: decode it too
                        last_packet = now
                        if self._packets is not None:
                            self._packets.packet(packet)
                    for av_frame in self._decode(packet):
                        rel_ts_ms = 1000.0 * clock.seconds(av_frame)
                        if clock.last_jump_s is not None:
                            self._health.timestamp_discontinuity()
                            log.warning("camera %s: timestamps jump %+.3f s (discontinuity "
                                        "%d); stream time continues and open tracks end",
                                        self.camera_id, clock.last_jump_s,
                                        clock.discontinuities)
                        if not rotation_logged:
                            rotation_logged = True
                            if display_rotation_deg(av_frame) and \
                                    self.source.apply_display_rotation:
                                log.info("camera %s: display matrix rotates frames by %d "
                                         "degrees; analysing them upright", self.camera_id,
                                         display_rotation_deg(av_frame))
                        if is_file and self.stop_event.wait(
                                max(0.0, opened + rel_ts_ms / 1000.0 - time.monotonic())):
                            return
                        if clock.last_jump_s is not None:
                            self._segment += 1
                        ts_ms = self._deliver(av_frame, ts_base_ms + rel_ts_ms)
                        if self._packets is not None:
                            self._packets.frame_timed(frame_ts_s(av_frame), ts_ms)
                        frames_here += 1
                        last_frame = time.monotonic()
                    self._check_stall(last_frame)
                if is_file and frames_here:
                    raise _EndOfFile
                if is_file:  # an empty file must not loop at full speed
                    raise SourceError(f"{self.source_url.display}: ended before any frame")
                raise SourceError(f"{self.source_url.display}: stream ended "
                                  f"(the server closed it)")
            except av.error.ExitError:  # our short read poll expired: no data yet
                now = time.monotonic()
                if now - last_packet > self.source.read_timeout_s:
                    raise SourceError(
                        f"{self.source_url.display}: read timeout, no data for "
                        f"{self.source.read_timeout_s:g} s") from None
                self._check_stall(last_frame)
            except av.error.FFmpegError as err:
                raise SourceError(f"{self.source_url.display}: read failed: "
                                  f"{describe_av_error(err)}") from err

    def _decode(self, packet: av.Packet) -> list[av.VideoFrame]:
        try:
            return list(packet.decode())
        except av.error.InvalidDataError as err:
            # A damaged packet (or joining mid-GOP) is normal on live streams: count it and
            # carry on; the stall watchdog catches a stream that never recovers.
            self._health.decode_error()
            log.debug("camera %s: decode error: %s", self.camera_id, describe_av_error(err))
            return []

    def _check_stall(self, last_frame: float) -> None:
        idle_s = time.monotonic() - last_frame
        if idle_s > self.source.stall_timeout_s:
            raise SourceError(f"{self.source_url.display}: stalled, no frame decoded for "
                              f"{idle_s:.1f} s (stall_timeout_s="
                              f"{self.source.stall_timeout_s:g})")

    def _ts_base_ms(self, now: float) -> float:
        """Timestamps continue across reconnects: the outage counts as elapsed time."""
        if self._last_ts_ms is None:
            return 0.0
        return self._last_ts_ms + 1000.0 * max(now - self._last_ts_monotonic, 0.001)

    def _deliver(self, av_frame: av.VideoFrame, ts_ms: float) -> float:
        """Queue the frame; returns the stream time it was given."""
        now = time.monotonic()
        self._health.frame_decoded(now)
        if self._last_ts_ms is not None and ts_ms <= self._last_ts_ms:
            ts_ms = self._last_ts_ms + 0.001  # keep ts strictly increasing for the runner
        frame = DecodedFrame(av_frame, self.camera_id, self._next_index, ts_ms, time.time(),
                             self._segment, self.source.apply_display_rotation)
        evicted = self.out.put(frame)
        self._health.frame_delivered(evicted)
        if self._health.state is not CameraState.STREAMING:
            self._health.set_state(CameraState.STREAMING)
            self._backoff.reset()
            log.info("camera %s: streaming", self.camera_id)
        self._next_index += 1
        self._last_ts_ms = ts_ms
        self._last_ts_monotonic = now
        return ts_ms
