"""Process memory: glibc malloc settings for a process of many threads and frame-sized arrays.

Two glibc defaults inflate a live worker's resident memory (measured with
``benchmarks/live_capacity.py``, MTCNN, 2026-12-01: 499 -> 435 MB for one camera, 609 -> 538 MB
for two, same frame rates):

- every thread that meets a locked arena gets one of its own, up to 8 per core, and freed
  memory stays in the arena it came from (decode, analysis, emotion and output threads each
  keep their own high-water mark): ``M_ARENA_MAX`` 2 shares two;
- blocks above the mmap threshold (128 KB) are mapped and returned to the system when freed,
  but glibc raises the threshold to the size of each freed mapped block (up to 32 MB), after
  which 1080p frames and detector buffers (3-25 MB) come from the heap and pin its top:
  ``M_MMAP_THRESHOLD`` fixed at 1 MiB turns that adjustment off.

Equivalent to the environment variables ``MALLOC_ARENA_MAX=2`` and
``MALLOC_MMAP_THRESHOLD_=1048576`` (glibc mallopt(3)); when the environment sets malloc itself
(either variable, or ``GLIBC_TUNABLES``), nothing is changed. Other C libraries (musl,
macOS): nothing is changed. The arena limit binds arenas made after the call: call it before
the pipeline starts its threads (libraries imported earlier may have made a few already).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger(__name__)

# mallopt(3) parameter numbers, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

ARENA_MAX = 2
MMAP_THRESHOLD_BYTES = 1 << 20


def tune_malloc() -> dict[str, int]:
    """Apply the settings above through glibc's ``mallopt``; call early, before the pipeline
    starts its threads.

    Returns the settings applied (empty where the C library is not glibc, or the environment
    already tunes malloc)."""
    if any(os.environ.get(name) for name in ("MALLOC_ARENA_MAX", "MALLOC_MMAP_THRESHOLD_",
                                             "GLIBC_TUNABLES")):
        return {}
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return {}
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = {}
    for param, value, label in ((M_ARENA_MAX, ARENA_MAX, "arena_max"),
                                (M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES, "mmap_threshold_bytes")):
        if mallopt(param, value) == 1:  # mallopt returns 1 on success
            applied[label] = value
    if applied:
        log.debug("malloc tuned: %s", applied)
    return applied
