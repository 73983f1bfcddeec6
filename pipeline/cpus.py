"""How many CPUs this process may use: its CPU affinity, capped by its cgroup's CPU quota.

``os.cpu_count()`` counts the host: a pod limited to 2 CPUs on a 64-core node would see 64.
The quota is read for the cgroup named in ``/proc/self/cgroup`` and every cgroup above it (a
parent's limit binds too; the smallest wins), under ``/sys/fs/cgroup``:

- cgroup v2 (line ``0::/path``): ``cpu.max``, ``"<quota> <period>"`` or ``"max <period>"``;
- cgroup v1 (line ``N:...cpu...:/path``): ``cpu.cfs_quota_us`` (-1: none) and
  ``cpu.cfs_period_us`` in the ``cpu`` (or ``cpu,cpuacct``) hierarchy.

Inside a container with its own cgroup namespace the path is ``/`` and the container's
limit is at the top. The quota in CPUs is rounded up (1.5 CPUs -> 2 threads can run).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def _ratio(quota: int, period: int) -> float | None:
    return quota / period if quota > 0 and period > 0 else None


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else _ratio(int(quota), int(period))
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        return _ratio(int((folder / "cpu.cfs_quota_us").read_text()),
                      int((folder / "cpu.cfs_period_us").read_text()))
    except (OSError, ValueError):
        return None


def _folders(base: Path, cgroup_path: str) -> list[Path]:
    """``base/cgroup_path`` and each folder above it, up to ``base``."""
    folders = [base]
    for part in Path(cgroup_path.strip()).parts[1:]:
        folders.append(folders[-1] / part)
    return folders


def cgroup_cpu_quota(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP
                     ) -> float | None:
    """The smallest CPU quota (in CPUs, may be fractional) of this process's cgroup and its
    parents, or None when none is set or nothing can be read."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = ["0::/"]
    quotas = []
    for line in lines:
        _, controllers, path = [*line.split(":", 2), "", ""][:3]
        if controllers == "":
            quotas += [_v2_quota(folder) for folder in _folders(root, path)]
        elif "cpu" in controllers.split(","):
            for name in dict.fromkeys(("cpu", "cpu,cpuacct", controllers)):  # each once
                quotas += [_v1_quota(folder) for folder in _folders(root / name, path)]
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> int:
    """CPUs this process may run on at once: affinity, capped by the cgroup quota; >= 1."""
    if hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:  # macOS, Windows
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root, proc_cgroup)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)
