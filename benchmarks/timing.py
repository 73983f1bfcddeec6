"""Shared wall-clock timing for the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np


def time_calls(fn: Callable[[], object], min_s: float, min_iters: int) -> np.ndarray:
    """Seconds per call of ``fn``: at least ``min_iters`` calls and ``min_s`` seconds."""
    times = []
    start = time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_s:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return np.asarray(times)
