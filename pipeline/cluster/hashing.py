"""Rendezvous (highest random weight) hashing: which worker should analyse which camera.

Every worker computes the same answer from the same inputs, with no coordination: each
camera ranks the workers by ``hash(camera, worker)`` and goes to the best-ranked one. When a
worker joins, only the cameras it now wins move (about 1/N); when one leaves, only its own
cameras move. Pure functions, no Redis.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

_ORDINAL = re.compile(r"-(\d+)$")


def hrw_score(camera_id: str, worker_id: str) -> int:
    """A stable 64-bit weight of ``(camera, worker)`` (BLAKE2b, not Python's salted hash)."""
    digest = hashlib.blake2b(f"{camera_id}\x00{worker_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def ranked_workers(camera_id: str, worker_ids: Iterable[str]) -> list[str]:
    """``worker_ids`` best first for ``camera_id`` (ties, never seen in practice, by id)."""
    return sorted(worker_ids, key=lambda worker: (-hrw_score(camera_id, worker), worker))


@dataclass(frozen=True)
class Assignment:
    """``owners``: camera id to worker id; ``unassigned``: cameras no live worker has
    room for (sorted)."""

    owners: Mapping[str, str]
    unassigned: tuple[str, ...]

    def cameras_of(self, worker_id: str) -> tuple[str, ...]:
        return tuple(sorted(c for c, w in self.owners.items() if w == worker_id))


def assign(camera_ids: Sequence[str], capacities: Mapping[str, int]) -> Assignment:
    """Give each camera to its best-ranked worker that still has room.

    ``capacities``: live worker id to the most cameras it takes. Cameras are placed in id
    order, so the answer depends only on the inputs; with room to spare it is plain
    rendezvous hashing. Cameras left over when every worker is full are ``unassigned``."""
    room = {worker: int(capacity) for worker, capacity in capacities.items() if capacity > 0}
    owners: dict[str, str] = {}
    unassigned: list[str] = []
    for camera in sorted(set(camera_ids)):
        for worker in ranked_workers(camera, room):
            if room[worker] > 0:
                owners[camera] = worker
                room[worker] -= 1
                break
        else:
            unassigned.append(camera)
    return Assignment(owners, tuple(unassigned))


def static_share(camera_ids: Sequence[str], index: int, count: int) -> list[str]:
    """The cameras of worker ``index`` among ``count`` (``cluster.mode: static``): those
    whose best slot is ``index``. Raises ValueError for an index outside ``0..count-1``."""
    if not 0 <= index < count:
        raise ValueError(f"worker index: expected 0..{count - 1}, got {index}")
    slots = [str(i) for i in range(count)]
    return [c for c in camera_ids if ranked_workers(c, slots)[0] == str(index)]


def worker_ordinal(worker_id: str) -> int | None:
    """The number ending a StatefulSet pod name (``cctv-pipeline-2`` -> 2), else None."""
    match = _ORDINAL.search(worker_id)
    return int(match.group(1)) if match else None
