"""Run metrics: per-stage timings and per-camera counters, exported to Prometheus when a port
is configured, and summarised at the end of a replay.

Callers count with :meth:`RunMetrics.count` (camera, kind, amount). Each kind listed in
:data:`NAMED_COUNTERS` is exported as its own counter (``cctv_frames_analysed_total{camera}``,
``cctv_faces_detected_total``, ``cctv_crops_classified_total``, ``cctv_face_events_total``,
``cctv_alerts_total``...); every kind, named or not, is also kept in the older catch-all
``cctv_events_total{camera,kind}`` so existing scrapes keep working. Besides counters:
``cctv_stage_seconds`` (per stage call), ``cctv_event_latency_seconds`` (frame decoded to
event handed to the Redis publisher), ``cctv_analysis_fps{camera}``,
``cctv_analysis_fps_target{camera}`` (the configured ``analysis_fps``), ``cctv_build_info`` and
the process and Python platform collectors. Camera health and publisher state are added by
collectors read at scrape time (``pipeline/sources/metrics.py``, ``pipeline/output_metrics.py``).
"""

from __future__ import annotations

import importlib.metadata
import platform
import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from pipeline.health_server import HealthProbes, HealthServer

# Window over which per-camera rates (analysed fps) are measured, in seconds.
RATE_WINDOW_S = 5.0

# kind (as passed to RunMetrics.count) -> (Prometheus counter name without _total, help)
NAMED_COUNTERS: dict[str, tuple[str, str]] = {
    "frames_analysed": ("cctv_frames_analysed",
                        "Frames taken by analysis: detection on the analysis_fps cadence, "
                        "tracking in between"),
    "detector_runs": ("cctv_detector_runs", "Frames the face detector ran on"),
    "faces_detected": ("cctv_faces_detected", "Faces the detector reported"),
    "tracks": ("cctv_tracks_started", "Face tracks started"),
    "crops_classified": ("cctv_crops_classified",
                         "Aligned face crops enhanced and classified"),
    "crops_dropped": ("cctv_crops_dropped",
                      "Face crops dropped before classification (emotion worker behind)"),
    "non_face_rejected": ("cctv_crops_rejected_non_face",
                          "Crops the classifier called not a face (no event published)"),
    "sr_applied": ("cctv_sr_applied", "Crops restored by the SR generator"),
    "events": ("cctv_face_events", "Face emotion events handed to the output"),
    "alerts": ("cctv_alerts", "Alerts raised by the rules"),
    "frame_errors": ("cctv_frame_errors", "Frames whose analysis raised an error"),
    "classify_errors": ("cctv_classify_errors", "Emotion batches that raised an error"),
    "output_errors": ("cctv_output_errors", "Output operations that raised an error"),
    "camera_start_failed": ("cctv_camera_start_failures",
                            "Cameras that could not be started (bad config)"),
    "redis_entries_lost": ("cctv_redis_entries_lost",
                           "Entries Redis acknowledged and then lost"),
    "redis_streams_lost": ("cctv_redis_streams_lost", "Streams that vanished from Redis"),
}
# kinds whose per-camera rate is kept (RunMetrics.rate)
RATE_KINDS = ("frames_analysed",)
LATENCY_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(frozen=True)
class StageTiming:
    stage: str
    calls: int
    total_ms: float

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else 0.0


class RateWindow:
    """Events per second over the last ``window_s`` seconds (monotonic clock). Not locked:
    the owner serialises access."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self._window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()
        self._total = 0

    def add(self, amount: int, now: float) -> None:
        self._samples.append((now, amount))
        self._total += amount
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        return self._total / self._window_s

    def _trim(self, now: float) -> None:
        while self._samples and now - self._samples[0][0] > self._window_s:
            self._total -= self._samples.popleft()[1]


def build_info() -> dict[str, str]:
    """Versions for ``cctv_build_info``: this package and the runtime libraries that decide
    what it computes."""

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "unknown"

    return {"version": version("cctv-face-emotion"), "python": platform.python_version(),
            "onnxruntime": version("onnxruntime"), "av": version("av")}


class RunMetrics:
    """Thread-safe counters and stage timers; one instance per run (no global registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self._stage_ms: dict[str, float] = defaultdict(float)
        self._stage_calls: dict[str, int] = defaultdict(int)
        self._rates: dict[tuple[str, str], RateWindow] = {}
        self._counter = Counter("cctv_events_total",
                                "Every pipeline count by camera and kind (older catch-all; "
                                "the named cctv_*_total counters split it)",
                                ["camera", "kind"], registry=self.registry)
        self._named = {kind: Counter(name, documentation, ["camera"], registry=self.registry)
                       for kind, (name, documentation) in NAMED_COUNTERS.items()}
        self._histogram = Histogram("cctv_stage_seconds", "Time spent per stage call", ["stage"],
                                    registry=self.registry,
                                    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))
        self._latency = Histogram(
            "cctv_event_latency_seconds",
            "Wall time from a frame's decode to its face event being handed to the Redis "
            "publisher (its batch wait, at most redis.publish_max_wait_ms, comes on top)",
            registry=self.registry, buckets=LATENCY_BUCKETS_S)
        self._analysis_fps = Gauge("cctv_analysis_fps",
                                   f"Frames analysed per second over the last "
                                   f"{RATE_WINDOW_S:.0f} s", ["camera"], registry=self.registry)
        self._analysis_target = Gauge(
            "cctv_analysis_fps_target",
            "Detection passes per second the camera is configured for (analysis_fps); "
            "compare with rate(cctv_detector_runs_total)", ["camera"], registry=self.registry)
        Info("cctv_build", "Versions of this build", registry=self.registry).info(build_info())
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        self._server: HealthServer | None = None

    def count(self, camera_id: str, kind: str, amount: int = 1) -> None:
        if amount <= 0:
            return
        with self._lock:
            self._counts[(camera_id, kind)] += amount
            if kind in RATE_KINDS:
                window = self._rates.get((camera_id, kind))
                if window is None:
                    window = self._rates[(camera_id, kind)] = RateWindow()
                    self._analysis_fps.labels(camera=camera_id).set_function(
                        lambda cam=camera_id: self.rate("frames_analysed", cam))
                window.add(amount, time.monotonic())
        self._counter.labels(camera=camera_id, kind=kind).inc(amount)
        named = self._named.get(kind)
        if named is not None:
            named.labels(camera=camera_id).inc(amount)

    def set_analysis_target(self, camera_id: str, analysis_fps: float | None) -> None:
        """Export the camera's configured ``analysis_fps`` (detection passes per second);
        None or 0 (every frame) exports nothing, since the stream's own rate is the target."""
        if analysis_fps:
            self._analysis_target.labels(camera=camera_id).set(analysis_fps)
        else:
            self.clear_analysis_target(camera_id)

    def clear_analysis_target(self, camera_id: str) -> None:
        """Stop exporting the camera's target (it stopped or moved to another worker)."""
        with suppress(KeyError):
            self._analysis_target.remove(camera_id)

    def total(self, kind: str, camera_id: str | None = None) -> int:
        with self._lock:
            return sum(v for (cam, k), v in self._counts.items()
                       if k == kind and (camera_id is None or cam == camera_id))

    def rate(self, kind: str, camera_id: str) -> float:
        """Per-second rate of ``kind`` for one camera over the last ``RATE_WINDOW_S`` s
        (kinds in ``RATE_KINDS`` only; 0.0 for others or before the first count)."""
        with self._lock:
            window = self._rates.get((camera_id, kind))
            return window.rate(time.monotonic()) if window is not None else 0.0

    def observe_event_latency(self, seconds: float) -> None:
        """Frame decode to publish, in seconds (negative values, from a clock step, are
        recorded as 0)."""
        self._latency.observe(max(seconds, 0.0))

    @contextmanager
    def time_stage(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            with self._lock:
                self._stage_ms[stage] += elapsed * 1000.0
                self._stage_calls[stage] += 1
            self._histogram.labels(stage=stage).observe(elapsed)

    def stage_timings(self) -> list[StageTiming]:
        with self._lock:
            return [StageTiming(s, self._stage_calls[s], self._stage_ms[s])
                    for s in sorted(self._stage_ms)]

    def register(self, collector: Collector) -> None:
        """Add a collector read at scrape time (camera health, publisher state)."""
        self.registry.register(collector)

    def serve(self, port: int, host: str = "127.0.0.1",
              probes: HealthProbes | None = None) -> HealthServer:
        """Serve /metrics (and, with ``probes``, /livez, /readyz and /status) over HTTP on
        ``host:port`` in a daemon thread (0 picks a free port: read ``.port``). Raises
        PipelineError when the address cannot be bound."""
        from pipeline.health_server import HealthServer

        server = HealthServer(self.registry, probes, host=host, port=port)
        server.start()
        self._server = server
        return server

    def close(self) -> None:
        """Stop the HTTP server started by :meth:`serve`, if any."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()
