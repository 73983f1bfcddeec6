"""Prometheus view of camera health: a collector that reads :class:`CameraHealth` snapshots
at scrape time, so counters have one source of truth and no module-level metric objects."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.sources.health import CameraHealth, CameraState

_COUNTERS = (
    ("cctv_source_frames_decoded", "Frames decoded from the camera", "frames_decoded"),
    ("cctv_source_frames_delivered", "Frames handed to the live queue", "frames_delivered"),
    ("cctv_source_frames_dropped", "Frames evicted unread from the live queue", "frames_dropped"),
    ("cctv_source_reconnects", "Reconnect attempts after a failure", "reconnects"),
    ("cctv_source_errors", "Failed connections: open, read and stall errors", "errors"),
    ("cctv_source_decode_errors", "Damaged packets skipped", "decode_errors"),
    ("cctv_source_timestamp_discontinuities", "Timestamp restarts and jumps in the stream",
     "timestamp_discontinuities"),
)


class CameraHealthCollector(Collector):
    """Register on a registry: ``registry.register(CameraHealthCollector(get_healths))``
    where ``get_healths`` returns the current snapshots (e.g. ``[c.health() for c in cams]``)."""

    def __init__(self, healths: Callable[[], Iterable[CameraHealth]]) -> None:
        self._healths = healths

    def collect(self) -> Iterator[Metric]:
        healths = list(self._healths())
        for name, documentation, attribute in _COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=["camera"])
            for health in healths:
                family.add_metric([health.camera_id], getattr(health, attribute))
            yield family
        fps = GaugeMetricFamily("cctv_source_fps", "Decoded frames per second",
                                labels=["camera"])
        state = GaugeMetricFamily("cctv_source_state", "1 for the camera's current state",
                                  labels=["camera", "state"])
        for health in healths:
            fps.add_metric([health.camera_id], health.fps)
            for option in CameraState:
                state.add_metric([health.camera_id, option.value],
                                 1.0 if health.state is option else 0.0)
        yield fps
        yield state
