"""Polling helpers for tests that wait on another process or thread (never a bare sleep)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(condition: Callable[[], object], timeout_s: float = 30.0) -> None:
    """Poll ``condition`` every 50 ms; raise TimeoutError when it is not true in time."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met in time")
        time.sleep(0.05)
