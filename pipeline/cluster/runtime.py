"""The cluster pieces one worker needs, built from their own config sections: a Redis client
with the cluster's short timeouts, the shared alert cooldowns (static and leases modes) and,
in leases mode, the coordinator. The runner owns the coordinator's thread."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from pipeline.cluster.cooldowns import RedisCooldowns
from pipeline.cluster.coordinator import CameraControl, ClusterCoordinator
from pipeline.cluster.keys import ClusterKeys
from pipeline.config import CameraConfig, ClusterConfig, RedisConfig
from pipeline.errors import ConfigError
from pipeline.sinks.client import create_redis_client

log = logging.getLogger(__name__)


class ClusterRuntime:
    """Raises ConfigError (from the client factory) for bad Redis settings; never connects
    here, so an unreachable Redis does not stop the worker from starting."""

    def __init__(self, cfg: ClusterConfig, redis_cfg: RedisConfig, station_id: str,
                 cameras: Sequence[CameraConfig], worker_id: str,
                 control: CameraControl) -> None:
        if redis_cfg.embedded:
            raise ConfigError(f"cluster.mode {cfg.mode!r} needs the Redis every worker shares: "
                              f"set redis.embedded false and redis.url")
        timeout_s = cfg.redis_timeout_s
        # its own client: a tick must never wait the publisher's longer timeouts
        self._client = create_redis_client(redis_cfg.model_copy(
            update={"connect_timeout_s": timeout_s, "socket_timeout_s": timeout_s}))
        keys = ClusterKeys.for_station(redis_cfg.stream_prefix, station_id)
        self.cooldowns = RedisCooldowns(self._client, keys, worker_id)
        self.coordinator: ClusterCoordinator | None = None
        if cfg.mode == "leases":
            self.coordinator = ClusterCoordinator(cfg, cameras, worker_id, self._client, keys,
                                                  control)
        self._thread: threading.Thread | None = None

    def run_coordinator(self, stop: threading.Event) -> None:
        """The coordinator loop, for the runner's ``cluster`` thread (returns at once
        outside leases mode)."""
        if self.coordinator is not None:
            self.coordinator.run(stop)

    def release_all(self) -> None:
        """After the cameras stopped: give their leases and the heartbeat back."""
        if self.coordinator is not None:
            self.coordinator.shutdown()

    def close(self) -> None:
        self._client.close()
