"""Run as a script: how much of 80 MB of freed 4 MB arrays the process still holds.

``python tests/helpers/malloc_probe.py tuned|plain`` prints JSON ``{applied, retained_mb}``.
A freed 24 MB array first raises glibc's dynamic mmap threshold (as a detector's buffers do),
so under the defaults the 4 MB arrays come from the heap, and a small array allocated after
them keeps the heap from shrinking.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pipeline.memory import tune_malloc

applied = tune_malloc() if sys.argv[1] == "tuned" else {}

import numpy as np  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


big = np.ones(24 << 20, np.uint8)
del big
before = rss_mb()
blocks = [np.ones(4 << 20, np.uint8) for _ in range(20)]
pin = np.ones(64 << 10, np.uint8)
del blocks
print(json.dumps({"applied": applied, "retained_mb": round(rss_mb() - before, 1)}))
