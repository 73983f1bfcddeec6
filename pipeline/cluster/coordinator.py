"""The leases-mode loop: heartbeat, renew, reassign, every ``cluster.tick_s``.

Each tick, in order:

1. beat and read the live workers (:class:`~pipeline.cluster.membership.Membership`), renew
   every held lease in one call, read every camera's lease holder;
2. a camera whose lease another worker now holds is stopped at once (its lease was lost:
   this worker was cut off from Redis longer than a lease);
3. the desired owners are computed (:func:`~pipeline.cluster.hashing.assign`) and the
   moves planned (:func:`~pipeline.cluster.reconcile.plan_moves`): cameras to give to
   another live worker are stopped (their open tracks end through the ordered output path)
   and then released by compare-and-delete; cameras to take are leased, then started.

While Redis cannot be reached the worker keeps its cameras (their output is spooled) and
takes none; when Redis is back it re-asserts its leases and waits one lease period before
taking any camera, so holders cut off by the same outage get theirs back first.
:meth:`ClusterCoordinator.shutdown` (after the runner stopped the cameras) releases every
lease and the heartbeat, so a rolling update moves each camera within about a tick.
Cameras no worker has room for are logged when that set changes and exported as a metric.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import redis

from pipeline.cluster.hashing import assign
from pipeline.cluster.keys import ClusterKeys
from pipeline.cluster.leases import Lease, LeaseStore, Renewal
from pipeline.cluster.membership import Membership
from pipeline.cluster.reconcile import plan_moves
from pipeline.config import CameraConfig, ClusterConfig
from pipeline.records import CameraRun
from pipeline.sinks.faults import classify_redis_error

log = logging.getLogger(__name__)

_REDIS_ERRORS = (redis.RedisError, OSError)


class CameraControl(Protocol):
    """What the coordinator needs from the runner."""

    def start_camera(self, camera: CameraConfig, run: CameraRun) -> bool:
        """Start decoding and analysing ``camera``; False when it could not be started."""
        ...

    def stop_cameras(self, camera_ids: Sequence[str]) -> None:
        """Stop these cameras; returns once their analysis stopped and their open tracks
        were handed to the output."""
        ...


@dataclass(frozen=True)
class ClusterState:
    """A snapshot for /status and the metrics; counts since start."""

    mode: str
    worker_id: str
    capacity: int
    redis_up: bool = False
    live_workers: tuple[str, ...] = ()
    held: Mapping[str, int] = field(default_factory=dict)  # camera id -> lease epoch
    unassigned: tuple[str, ...] = ()
    acquired: int = 0
    released: int = 0
    lost: int = 0

    def to_json(self) -> dict[str, object]:
        return {"mode": self.mode, "worker_id": self.worker_id, "capacity": self.capacity,
                "redis_up": self.redis_up, "live_workers": list(self.live_workers),
                "held": dict(self.held), "unassigned": list(self.unassigned),
                "acquired": self.acquired, "released": self.released, "lost": self.lost}


class ClusterCoordinator:
    """One per worker in ``cluster.mode: leases``. The runner calls :meth:`run` on a thread
    it owns, then, after stopping every camera, :meth:`shutdown`."""

    def __init__(self, cfg: ClusterConfig, cameras: Sequence[CameraConfig], worker_id: str,
                 client: redis.Redis, keys: ClusterKeys, control: CameraControl, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.worker_id = worker_id
        self._cameras = {camera.id: camera for camera in cameras}
        self._control = control
        self._clock = clock
        lease_ms = int(cfg.lease_s * 1000)
        self._leases = LeaseStore(client, keys, lease_ms)
        self._members = Membership(client, keys, lease_ms)
        self._held: dict[str, Lease] = {}
        self._redis_up: bool | None = None
        # take nothing for two ticks after start (see who else is starting) and for a lease
        # period after an outage (holders re-assert first)
        self._settle_until = clock() + 2 * cfg.tick_s
        self._unassigned: tuple[str, ...] | None = None
        self._counts = {"acquired": 0, "released": 0, "lost": 0}
        self._live: tuple[str, ...] = ()
        self._state_lock = threading.Lock()
        self._state = ClusterState("leases", worker_id, cfg.capacity)

    def state(self) -> ClusterState:
        with self._state_lock:
            return self._state

    def run(self, stop: threading.Event) -> None:
        """Tick until ``stop`` is set; a failing tick is logged and the next one runs."""
        while not stop.is_set():
            started = self._clock()
            try:
                self.tick(stop)
            except Exception:
                log.exception("cluster tick failed")
            stop.wait(max(0.0, self.cfg.tick_s - (self._clock() - started)))

    def tick(self, stop: threading.Event | None = None) -> None:
        camera_ids = sorted(self._cameras)
        try:
            live = self._members.heartbeat(self.worker_id, self.cfg.capacity)
            renewals = self._leases.renew(list(self._held.values()))
            holders = self._leases.holders(camera_ids)
        except _REDIS_ERRORS as err:
            self._redis_down(err)
            return
        self._redis_back()
        self._live = tuple(sorted(live))
        self._drop_lost(renewals, holders)
        assignment = assign(camera_ids, live)
        self._report_unassigned(assignment.unassigned)
        moves = plan_moves(self.worker_id, assignment, list(self._held),
                           {c: h[0] if h else None for c, h in holders.items()},
                           self.cfg.capacity, settling=self._clock() < self._settle_until)
        if moves.release:
            self._release(moves.release, assignment.owners)
        for camera_id in moves.acquire:
            if stop is not None and stop.is_set():
                break
            self._acquire(camera_id)
        self._snapshot(assignment.unassigned)

    def shutdown(self) -> None:
        """Release every lease (the cameras are stopped already) and the heartbeat, so the
        other workers take the cameras on their next tick. Errors are logged."""
        held, self._held = list(self._held.values()), {}
        try:
            for lease in held:
                self._leases.release(lease)
            self._members.leave(self.worker_id)
        except _REDIS_ERRORS as err:
            log.warning("cluster: could not release %d leases at stop (%s); they lapse "
                        "within %.1f s", len(held), classify_redis_error(err).cause,
                        self.cfg.lease_s)
            return
        if held:
            log.info("cluster: released %s at stop",
                     ", ".join(sorted(lease.camera_id for lease in held)))
        self._snapshot(self._unassigned or ())

    # -- steps ----------------------------------------------------------------------------
    def _drop_lost(self, renewals: Mapping[str, Renewal],
                   holders: Mapping[str, tuple[str, int] | None]) -> None:
        lost = [c for c, renewal in renewals.items() if renewal is Renewal.LOST]
        for camera_id, renewal in renewals.items():
            if renewal is Renewal.REASSERTED:
                log.warning("cluster: lease on camera %s had lapsed; re-asserted (epoch %d)",
                            camera_id, self._held[camera_id].epoch)
        if not lost:
            return
        self._control.stop_cameras(lost)
        for camera_id in lost:
            self._held.pop(camera_id, None)
            holder = holders.get(camera_id)
            log.error("cluster: lost the lease on camera %s to %s; stopped it", camera_id,
                      f"{holder[0]} (epoch {holder[1]})" if holder else "another worker")
        self._counts["lost"] += len(lost)

    def _release(self, camera_ids: Sequence[str], owners: Mapping[str, str]) -> None:
        self._control.stop_cameras(camera_ids)
        for camera_id in camera_ids:
            lease = self._held.pop(camera_id)
            try:
                released = self._leases.release(lease)
            except _REDIS_ERRORS as err:
                log.warning("cluster: camera %s stopped but its lease could not be released "
                            "(%s); it lapses within %.1f s", camera_id,
                            classify_redis_error(err).cause, self.cfg.lease_s)
                continue
            self._counts["released"] += 1
            log.info("cluster: handed camera %s (epoch %d) to %s%s", camera_id, lease.epoch,
                     owners.get(camera_id), "" if released else " (the lease had lapsed)")

    def _acquire(self, camera_id: str) -> None:
        try:
            lease = self._leases.acquire(camera_id, self.worker_id)
        except _REDIS_ERRORS as err:
            self._redis_down(err)
            return
        if lease is None:
            return  # another worker was faster; the next tick sees it
        self._held[camera_id] = lease
        self._counts["acquired"] += 1
        run = CameraRun(self.worker_id, lease.epoch, secrets.token_hex(8))
        started = self._control.start_camera(self._cameras[camera_id], run)
        log.info("cluster: took camera %s (epoch %d)%s", camera_id, lease.epoch,
                 "" if started else "; it could not be started (see above), lease kept")

    def _redis_down(self, err: BaseException) -> None:
        if self._redis_up is not False:
            log.warning("cluster: redis unreachable (%s): keeping %d cameras, taking none",
                        classify_redis_error(err).cause, len(self._held))
        self._redis_up = False
        self._snapshot(self._unassigned or ())

    def _redis_back(self) -> None:
        if self._redis_up is False:
            log.info("cluster: redis reachable again; re-asserting %d leases, taking no camera "
                     "for %.1f s", len(self._held), self.cfg.lease_s)
            self._settle_until = max(self._settle_until, self._clock() + self.cfg.lease_s)
        self._redis_up = True

    def _report_unassigned(self, unassigned: tuple[str, ...]) -> None:
        if unassigned != self._unassigned and (unassigned or self._unassigned):
            if unassigned:
                log.warning("cluster: %d cameras have no worker with room (capacity): %s",
                            len(unassigned), ", ".join(unassigned))
            else:
                log.info("cluster: every camera has a worker again")
        self._unassigned = unassigned

    def _snapshot(self, unassigned: tuple[str, ...]) -> None:
        state = ClusterState(
            "leases", self.worker_id, self.cfg.capacity, bool(self._redis_up), self._live,
            {c: lease.epoch for c, lease in sorted(self._held.items())}, tuple(unassigned),
            **self._counts)
        with self._state_lock:
            self._state = state
