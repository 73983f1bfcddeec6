"""How many CPUs this process may use: its CPU affinity, capped by a cgroup CPU quota.

``os.cpu_count()`` counts the host: a pod limited to 2 CPUs on a 64-core node would see 64.
The quota is read from cgroup v2 (``cpu.max``: ``"<quota> <period>"`` or ``"max <period>"``)
or, failing that, cgroup v1 (``cpu/cpu.cfs_quota_us`` and ``cpu/cpu.cfs_period_us``, quota
-1 for none), under ``/sys/fs/cgroup``; the quota in CPUs is rounded up (1.5 CPUs -> 2).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_cpu_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup quota allows (may be fractional), or None when there is no quota or
    no cgroup file can be read."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


def usable_cpus(root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may run on at once: affinity, capped by the cgroup quota; >= 1."""
    if hasattr(os, "sched_getaffinity"):
        count = len(os.sched_getaffinity(0))
    else:  # macOS, Windows
        count = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root)
    if quota is not None:
        count = min(count, math.ceil(quota))
    return max(1, count)
