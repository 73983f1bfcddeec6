"""Alert cooldowns shared by a station's workers, so a camera that moves to another worker
(failover, handover) does not fire the alert its previous owner just sent.

A fired alert claims ``cooldown:{rule}:{camera}:{scope}`` with ``SET NX PX cooldown``
(wall-clock time: stream times differ between workers). ``scope`` is ``camera`` for
camera-scoped and crowd rules, the track uid for track-scoped ones. While Redis cannot be
asked, claims succeed (the engine's local cooldown still applies) and Redis is tried again
after ``retry_after_s``: an outage never silences alerts. Runs on the output thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from pipeline.cluster.keys import ClusterKeys
from pipeline.sinks.faults import classify_redis_error

log = logging.getLogger(__name__)


class RedisCooldowns:
    """:class:`~pipeline.rules.engine.SharedCooldowns` on Redis."""

    def __init__(self, client: redis.Redis, keys: ClusterKeys, worker_id: str, *,
                 retry_after_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._client = client
        self._keys = keys
        self._worker_id = worker_id
        self._retry_after_s = retry_after_s
        self._clock = clock
        self._down_until: float | None = None

    def claim(self, rule_id: str, camera_id: str, scope: str, cooldown_s: float) -> bool:
        """True when this worker may fire (no worker did within ``cooldown_s``, or Redis
        is away); False when another claim is still cooling down."""
        now = self._clock()
        if self._down_until is not None and now < self._down_until:
            return True
        try:
            claimed = self._client.set(self._keys.cooldown(rule_id, camera_id, scope),
                                       self._worker_id, nx=True,
                                       px=max(1, int(cooldown_s * 1000)))
        except (redis.RedisError, OSError) as err:
            if self._down_until is None:
                log.warning("shared alert cooldowns unavailable (%s): local cooldowns only, "
                            "retrying in %.0f s", classify_redis_error(err).cause,
                            self._retry_after_s)
            self._down_until = now + self._retry_after_s
            return True
        if self._down_until is not None:
            log.info("shared alert cooldowns available again")
            self._down_until = None
        return bool(claimed)
