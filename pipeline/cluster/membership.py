"""Worker heartbeats in Redis: who is alive, with what capacity.

A sorted set scores each worker id by the expiry of its last heartbeat, in Redis server
time (``TIME``), so the workers' own clocks never matter; a hash keeps each worker's
capacity. One Lua script per tick beats, forgets lapsed workers and returns the live ones.
Raises redis-py's errors to the caller.
"""

from __future__ import annotations

import redis

from pipeline.cluster.keys import ClusterKeys

_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[1] ~= '' then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
end
local dead = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now)
if #dead > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
  redis.call('HDEL', KEYS[2], unpack(dead))
end
local live = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf')
local capacities = {}
if #live > 0 then capacities = redis.call('HMGET', KEYS[2], unpack(live)) end
return {live, capacities}
"""

_LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class Membership:
    """Heartbeats of one station's workers; a heartbeat lives ``ttl_ms``."""

    def __init__(self, client: redis.Redis, keys: ClusterKeys, ttl_ms: int) -> None:
        self._keys = keys
        self.ttl_ms = int(ttl_ms)
        self._heartbeat = client.register_script(_HEARTBEAT)
        self._leave = client.register_script(_LEAVE)

    def heartbeat(self, worker_id: str, capacity: int) -> dict[str, int]:
        """Beat for ``worker_id`` (``""``: only look) and return the live workers with
        their capacities, this one included."""
        live, capacities = self._heartbeat(
            keys=[self._keys.members, self._keys.capacities],
            args=[worker_id, self.ttl_ms, int(capacity)])
        return {_text(worker): int(_text(cap)) if cap is not None else 0
                for worker, cap in zip(live, capacities, strict=True)}

    def leave(self, worker_id: str) -> None:
        """Drop this worker's heartbeat at once (a clean stop), so others need not wait for
        it to lapse."""
        self._leave(keys=[self._keys.members, self._keys.capacities], args=[worker_id])
