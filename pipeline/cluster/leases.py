"""Camera leases in Redis: one holder per camera, with a fencing epoch.

``lease:{camera}`` holds ``{worker}:{epoch}`` with a TTL of ``lease_ms``. Every step is one
Lua script, so it is atomic on the server:

- acquire: when no lease exists (or it names this worker: its previous incarnation),
  ``INCR epoch:{camera}`` and ``SET lease NX PX`` (the epoch only ever grows, so a later
  holder always has a higher one: consumers order a handover by it);
- renew (all held cameras in one call): ``PEXPIRE`` when the lease still holds our token;
  re-create it when it vanished (Redis restarted, or lapsed in an outage while nobody else
  took it), raising the epoch counter to it if the counter went back; report it lost when
  another worker holds it;
- release: compare-and-delete (only our own token is deleted).

Raises redis-py's errors (connection, timeout, NOPERM) to the caller.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import redis

from pipeline.cluster.keys import ClusterKeys

_ACQUIRE = """
local current = redis.call('GET', KEYS[1])
if current and string.sub(current, 1, string.len(ARGV[1]) + 1) ~= ARGV[1] .. ':' then
  return false
end
local epoch = redis.call('INCR', KEYS[2])
if current then redis.call('DEL', KEYS[1]) end
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch, 'NX', 'PX', ARGV[2])
return epoch
"""

_RENEW = """
local n = #KEYS / 2
local out = {}
for i = 1, n do
  local token = ARGV[i + 1]
  local current = redis.call('GET', KEYS[i])
  if current == token then
    redis.call('PEXPIRE', KEYS[i], ARGV[1])
    out[i] = 1
  elseif not current then
    redis.call('SET', KEYS[i], token, 'PX', ARGV[1])
    local epoch = tonumber(string.match(token, ':(%d+)$'))
    local counter = tonumber(redis.call('GET', KEYS[n + i]) or '0')
    if counter < epoch then redis.call('SET', KEYS[n + i], epoch) end
    out[i] = 2
  else
    out[i] = 0
  end
end
return out
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


@dataclass(frozen=True)
class Lease:
    camera_id: str
    worker_id: str
    epoch: int

    @property
    def token(self) -> str:
        return f"{self.worker_id}:{self.epoch}"


class Renewal(enum.Enum):
    RENEWED = 1
    REASSERTED = 2  # it had vanished; re-created with our token
    LOST = 0  # another worker holds it now


def parse_token(value: object) -> tuple[str, int] | None:
    """``(worker, epoch)`` of a lease value, None for a missing or foreign value."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else str(value)
    worker, _, epoch = text.rpartition(":")
    return (worker, int(epoch)) if worker and epoch.isdigit() else None


class LeaseStore:
    """The leases of one station's cameras. ``lease_ms``: their time to live."""

    def __init__(self, client: redis.Redis, keys: ClusterKeys, lease_ms: int) -> None:
        self._client = client
        self._keys = keys
        self.lease_ms = int(lease_ms)
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    def acquire(self, camera_id: str, worker_id: str) -> Lease | None:
        """Take the camera's lease with a new epoch; None when another worker holds it."""
        epoch = self._acquire(keys=[self._keys.lease(camera_id), self._keys.epoch(camera_id)],
                              args=[worker_id, self.lease_ms])
        return None if epoch is None else Lease(camera_id, worker_id, int(epoch))

    def renew(self, leases: Sequence[Lease]) -> dict[str, Renewal]:
        """Extend every lease in one round trip; per camera whether it held, was re-created
        or is lost."""
        if not leases:
            return {}
        keys = ([self._keys.lease(lease.camera_id) for lease in leases]
                + [self._keys.epoch(lease.camera_id) for lease in leases])
        reply = self._renew(keys=keys, args=[self.lease_ms, *(lease.token for lease in leases)])
        return {lease.camera_id: Renewal(int(code)) for lease, code in
                zip(leases, reply, strict=True)}

    def release(self, lease: Lease) -> bool:
        """Delete the lease if it is still ours; False when it had lapsed or moved."""
        return bool(self._release(keys=[self._keys.lease(lease.camera_id)],
                                  args=[lease.token]))

    def holders(self, camera_ids: Sequence[str]) -> Mapping[str, tuple[str, int] | None]:
        """Per camera, ``(worker, epoch)`` of its lease, None when it has none."""
        if not camera_ids:
            return {}
        values = self._client.mget([self._keys.lease(c) for c in camera_ids])
        return {camera: parse_token(value) for camera, value in
                zip(camera_ids, values, strict=True)}
