"""Prometheus view of the cluster state, read at scrape time from the coordinator's
snapshot (a scrape never waits for Redis)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pipeline.cluster.coordinator import ClusterState


class ClusterCollector(Collector):
    """``state`` returns the latest :class:`ClusterState`, or None (nothing exported)."""

    def __init__(self, state: Callable[[], ClusterState | None]) -> None:
        self._state = state

    def collect(self) -> Iterator[Metric]:
        state = self._state()
        if state is None:
            return
        yield _gauge("cctv_cluster_cameras_held", "Cameras this worker holds and analyses",
                     len(state.held))
        yield _gauge("cctv_cluster_capacity", "cluster.capacity: most cameras this worker "
                     "takes", state.capacity)
        yield _gauge("cctv_cluster_cameras_unassigned", "Cameras no live worker has room for "
                     "(same on every worker)", len(state.unassigned))
        yield _gauge("cctv_cluster_workers_live", "Workers with a live heartbeat, this one "
                     "included", len(state.live_workers))
        yield _gauge("cctv_cluster_redis_up", "1 while the cluster state in Redis is "
                     "reachable", int(state.redis_up))
        epoch = GaugeMetricFamily("cctv_cluster_lease_epoch", "Fencing epoch of this "
                                  "worker's lease on each camera it holds", labels=["camera"])
        for camera_id, value in state.held.items():
            epoch.add_metric([camera_id], value)
        yield epoch
        moves = CounterMetricFamily("cctv_cluster_leases", "Camera leases taken, released "
                                    "to another worker, and lost", labels=["event"])
        moves.add_metric(["acquired"], state.acquired)
        moves.add_metric(["released"], state.released)
        moves.add_metric(["lost"], state.lost)
        yield moves


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
