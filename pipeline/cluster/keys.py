"""Redis key names of the cluster state of one station (all under the product's prefix, so
the shipped ACL's ``~cctv:*`` covers them; deploy/redis/users.acl)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterKeys:
    """``{stream_prefix}:{station}:cluster:...``:

    - ``lease:{camera}``: string ``{worker}:{epoch}``, with a TTL of ``cluster.lease_s``;
    - ``epoch:{camera}``: the camera's fencing counter (``INCR``), never expires;
    - ``members``: sorted set, worker id scored by its heartbeat's expiry (Redis ms);
    - ``capacity``: hash, worker id to its camera capacity;
    - ``cooldown:{rule}:{camera}:{scope}``: a fired alert's cooldown, with a TTL.
    """

    base: str

    @classmethod
    def for_station(cls, stream_prefix: str, station_id: str) -> ClusterKeys:
        return cls(f"{stream_prefix}:{station_id}:cluster")

    def lease(self, camera_id: str) -> str:
        return f"{self.base}:lease:{camera_id}"

    def epoch(self, camera_id: str) -> str:
        return f"{self.base}:epoch:{camera_id}"

    @property
    def members(self) -> str:
        return f"{self.base}:members"

    @property
    def capacities(self) -> str:
        return f"{self.base}:capacity"

    def cooldown(self, rule_id: str, camera_id: str, scope: str) -> str:
        return f"{self.base}:cooldown:{rule_id}:{camera_id}:{scope}"
