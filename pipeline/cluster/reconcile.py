"""What a worker does this tick, decided from what it sees (pure; the coordinator acts).

Rules (leases mode):
- a held camera whose desired owner is another live worker is released (that worker is
  alive by construction: the assignment only names live workers);
- a held camera that nobody can take (every worker full) is kept: never dropped to nobody;
- a camera desired here is acquired only when no lease exists for it (a holder gives it up
  itself, once it sees this worker alive), while this worker has room, and not while
  ``settling`` (just started, or Redis just came back: holders re-assert their leases
  first);
- a lease under this worker's own id that this process does not hold belongs to its
  previous incarnation (a restarted pod): it is taken over at once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from pipeline.cluster.hashing import Assignment


@dataclass(frozen=True)
class Moves:
    release: tuple[str, ...]  # stop, then compare-and-delete the lease
    acquire: tuple[str, ...]  # take the lease, then start


def plan_moves(worker_id: str, assignment: Assignment, held: Collection[str],
               holders: Mapping[str, str | None], capacity: int, *,
               settling: bool) -> Moves:
    """``held``: cameras this process holds; ``holders``: per camera, the worker id on its
    lease (None: no lease). Returns the cameras to release and to acquire, in id order."""
    release = tuple(sorted(c for c in held
                           if assignment.owners.get(c, worker_id) != worker_id))
    if settling:
        return Moves(release, ())
    room = capacity - (len(held) - len(release))
    wanted = [c for c in assignment.cameras_of(worker_id)
              if c not in held and holders.get(c) in (None, worker_id)]
    return Moves(release, tuple(wanted[:max(room, 0)]))
