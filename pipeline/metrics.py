"""Run metrics: per-stage timings and per-camera counters, exported to Prometheus when a port
is configured, and summarised at the end of a replay."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server


@dataclass(frozen=True)
class StageTiming:
    stage: str
    calls: int
    total_ms: float

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else 0.0


class RunMetrics:
    """Thread-safe counters and stage timers; one instance per run (no global registry)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str], int] = defaultdict(int)
        self._stage_ms: dict[str, float] = defaultdict(float)
        self._stage_calls: dict[str, int] = defaultdict(int)
        self._counter = Counter("cctv_events_total", "Pipeline counters by camera and kind",
                                ["camera", "kind"], registry=self.registry)
        self._histogram = Histogram("cctv_stage_seconds", "Time spent per stage call", ["stage"],
                                    registry=self.registry,
                                    buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1))

    def count(self, camera_id: str, kind: str, amount: int = 1) -> None:
        if amount <= 0:
            return
        with self._lock:
            self._counts[(camera_id, kind)] += amount
        self._counter.labels(camera=camera_id, kind=kind).inc(amount)

    def total(self, kind: str, camera_id: str | None = None) -> int:
        with self._lock:
            return sum(v for (cam, k), v in self._counts.items()
                       if k == kind and (camera_id is None or cam == camera_id))

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

    def serve(self, port: int, host: str = "127.0.0.1") -> None:
        """Expose /metrics over HTTP on ``port`` (0 picks a free port)."""
        start_http_server(port, addr=host, registry=self.registry)
