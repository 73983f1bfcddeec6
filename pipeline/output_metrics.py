"""Prometheus view of the output (publisher and spool): a collector that reads the
:class:`~pipeline.publish.OutputState` snapshot at scrape time, so the publisher's own counts
stay the one source of truth and a scrape never waits for Redis."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.publish import OutputState


class OutputStateCollector(Collector):
    """``registry.register(OutputStateCollector(lambda: output.state()))``; ``state`` may
    return None before the output exists (then nothing is exported)."""

    def __init__(self, state: Callable[[], OutputState | None]) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        if state is None or state.publisher is None:
            return
        stats = state.publisher
        yield _gauge("cctv_redis_up", "1 while Redis accepts writes, 0 while entries are "
                     "spooled", int(stats.redis_up))
        yield _gauge("cctv_spool_depth_entries", "Entries waiting in the on-disk spool",
                     stats.spool_depth)
        yield _gauge("cctv_spool_depth_bytes", "Bytes of entries in the on-disk spool",
                     state.spool_depth_bytes)
        yield _gauge("cctv_spool_capacity_entries", "spool.max_messages: at this depth the "
                     "oldest entries are dropped", state.spool_max_messages)
        yield _gauge("cctv_spool_accepting", "1 while the spool is below its limits",
                     int(state.spool_accepting))
        yield _counter("cctv_publish_failures", "Failed Redis writes (each sends its batch "
                       "to the spool and backs off)", stats.write_failures)
        published = CounterMetricFamily("cctv_published", "Entries Redis acknowledged",
                                        labels=["kind"])
        published.add_metric(["event"], stats.published_events)
        published.add_metric(["alert"], stats.published_alerts)
        yield published
        not_delivered = GaugeMetricFamily(
            "cctv_not_delivered", "This run's entries Redis has not acknowledged (spooled, "
            "dropped or rejected)", labels=["kind"])
        not_delivered.add_metric(["event"], stats.events_not_delivered)
        not_delivered.add_metric(["alert"], stats.alerts_not_delivered)
        yield not_delivered
        rejected = CounterMetricFamily("cctv_publish_rejected",
                                       "Entries Redis refused for good (never spooled)",
                                       labels=["kind"])
        rejected.add_metric(["event"], stats.rejected_events)
        rejected.add_metric(["alert"], stats.rejected_alerts)
        yield rejected
        dropped = CounterMetricFamily("cctv_spool_dropped", "Entries dropped from a full spool",
                                      labels=["kind"])
        dropped.add_metric(["event"], stats.dropped_events)
        dropped.add_metric(["alert"], stats.dropped_alerts)
        yield dropped
        yield _counter("cctv_redis_server_restarts", "Redis restarts noticed (run id changed)",
                       stats.server_restarts)
        last = GaugeMetricFamily("cctv_last_event_timestamp_seconds",
                                 "Unix time the camera's last event was handed to the "
                                 "publisher", labels=["camera"])
        for camera_id, ts in sorted(state.last_event_publish_ts_s.items()):
            last.add_metric([camera_id], ts)
        yield last


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)
