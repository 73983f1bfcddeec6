"""Which worker this is and, outside leases mode, which cameras it takes at start-up."""

from __future__ import annotations

import re
from collections.abc import Sequence

from pipeline.cluster.hashing import static_share, worker_ordinal
from pipeline.config import CameraConfig, ClusterConfig
from pipeline.errors import ConfigError

_WORKER_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def resolve_worker_id(cfg: ClusterConfig, cli_worker_id: str | None,
                      pod_name: str | None, host_name: str) -> str:
    """``--worker-id``, else ``cluster.worker_id``, else the pod name, else the host name.
    Raises ConfigError for an id that is not 1-64 of ``[A-Za-z0-9_.-]``."""
    for source, value in (("--worker-id", cli_worker_id), ("cluster.worker_id", cfg.worker_id),
                          ("POD_NAME", pod_name), ("the host name", host_name)):
        if value:
            if not _WORKER_ID.match(value):
                raise ConfigError(f"{source}: worker id {value!r} must be 1-64 of "
                                  f"A-Z a-z 0-9 _ . -")
            return value
    raise ConfigError("no worker id: set --worker-id or cluster.worker_id")


def startup_cameras(cfg: ClusterConfig, cameras: Sequence[CameraConfig],
                    worker_id: str) -> list[CameraConfig]:
    """The enabled ``cameras`` this worker starts with: all of them (single), its hash share
    (static), none (leases: the coordinator takes them). Raises ConfigError when static mode
    has no index (neither ``cluster.worker_index`` nor a number ending the worker id) or an
    index outside ``0..worker_count-1``."""
    if cfg.mode == "single":
        return list(cameras)
    if cfg.mode == "leases":
        return []
    index = cfg.worker_index if cfg.worker_index is not None else worker_ordinal(worker_id)
    if index is None:
        raise ConfigError(f"cluster.worker_index: static mode needs it, or a worker id ending "
                          f"in its index (like cctv-pipeline-2); got worker id {worker_id!r}")
    if index >= cfg.worker_count:
        raise ConfigError(f"cluster.worker_index: expected 0..{cfg.worker_count - 1} "
                          f"(cluster.worker_count {cfg.worker_count}), got {index}")
    share = set(static_share([c.id for c in cameras], index, cfg.worker_count))
    return [c for c in cameras if c.id in share]
