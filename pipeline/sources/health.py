"""Per-camera state and counters: a mutable, locked tracker owned by the camera loop, read
by anyone as a frozen :class:`CameraHealth` snapshot."""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from dataclasses import dataclass

from pipeline.secrets import mask_secrets

FPS_WINDOW_S = 2.0


class CameraState(enum.Enum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    RECONNECTING = "reconnecting"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class CameraHealth:
    """Snapshot of one camera. ``url`` is the config URL (no secrets); ``last_error`` is
    masked. ``errors`` counts failed connections (open, read, stall), each followed by a
    reconnect; ``decode_errors`` counts damaged packets skipped on a working connection;
    ``timestamp_discontinuities`` counts pts restarts and jumps (see ``StreamClock``).
    ``fps`` is decoded frames per second over the last ``FPS_WINDOW_S`` seconds."""

    camera_id: str
    url: str
    state: CameraState
    frames_decoded: int
    frames_delivered: int
    frames_dropped: int
    reconnects: int
    errors: int
    decode_errors: int
    timestamp_discontinuities: int
    last_error: str | None
    fps: float
    last_frame_wall_ts_s: float | None
    state_since_wall_ts_s: float


class HealthTracker:
    """Thread-safe counters for one camera; only the camera loop writes."""

    def __init__(self, camera_id: str, url: str) -> None:
        self._lock = threading.Lock()
        self._camera_id = camera_id
        self._url = mask_secrets(url)
        self._state = CameraState.STOPPED
        self._state_since = time.time()
        self._decoded = 0
        self._delivered = 0
        self._dropped = 0
        self._reconnects = 0
        self._errors = 0
        self._decode_errors = 0
        self._discontinuities = 0
        self._last_error: str | None = None
        self._last_frame_wall: float | None = None
        self._recent_frames: deque[float] = deque()

    @property
    def state(self) -> CameraState:
        return self._state

    def set_state(self, state: CameraState) -> None:
        with self._lock:
            if state is not self._state:
                self._state = state
                self._state_since = time.time()

    def frame_decoded(self, now_monotonic: float) -> None:
        with self._lock:
            self._decoded += 1
            self._last_frame_wall = time.time()
            self._recent_frames.append(now_monotonic)
            self._trim(now_monotonic)

    def frame_delivered(self, evicted: int) -> None:
        with self._lock:
            self._delivered += 1
            self._dropped += evicted

    def reconnecting(self) -> None:
        with self._lock:
            self._reconnects += 1

    def error(self, text: str) -> None:
        with self._lock:
            self._errors += 1
            self._last_error = mask_secrets(text)

    def decode_error(self) -> None:
        with self._lock:
            self._decode_errors += 1

    def timestamp_discontinuity(self) -> None:
        with self._lock:
            self._discontinuities += 1

    def _trim(self, now_monotonic: float) -> None:
        while self._recent_frames and now_monotonic - self._recent_frames[0] > FPS_WINDOW_S:
            self._recent_frames.popleft()

    def snapshot(self) -> CameraHealth:
        now = time.monotonic()
        with self._lock:
            self._trim(now)
            fps = len(self._recent_frames) / FPS_WINDOW_S
            return CameraHealth(
                camera_id=self._camera_id, url=self._url, state=self._state,
                frames_decoded=self._decoded, frames_delivered=self._delivered,
                frames_dropped=self._dropped, reconnects=self._reconnects, errors=self._errors,
                decode_errors=self._decode_errors,
                timestamp_discontinuities=self._discontinuities,
                last_error=self._last_error, fps=fps, last_frame_wall_ts_s=self._last_frame_wall,
                state_since_wall_ts_s=self._state_since)
