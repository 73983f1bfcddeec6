"""Sharing a station's cameras between workers (``cluster:`` in the config).

- ``single``: one worker takes every enabled camera (the default).
- ``static``: worker ``i`` of ``N`` takes the cameras rendezvous hashing gives slot ``i``
  (:func:`~pipeline.cluster.hashing.static_share`); no failover.
- ``leases``: workers heartbeat in Redis (:mod:`~pipeline.cluster.membership`); the desired
  owner of a camera is the rendezvous-hash winner among live workers with spare capacity
  (:func:`~pipeline.cluster.hashing.assign`); a worker holds each camera under a lease with a
  fencing epoch (:mod:`~pipeline.cluster.leases`), and
  :class:`~pipeline.cluster.coordinator.ClusterCoordinator` reconciles desired and held
  cameras every ``cluster.tick_s`` through the runner's start/stop camera calls.

Pure decisions (hashing, assignment, the reconcile plan) need no Redis; deploy/README.md
describes what an operator sees.
"""
