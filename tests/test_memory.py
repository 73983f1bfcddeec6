"""glibc malloc tuning of the live and replay processes (pipeline/memory.py)."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).parent / "helpers" / "malloc_probe.py"

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists()
                                or platform.libc_ver()[0] != "glibc",
                                reason="glibc on Linux only")


def _probe(mode: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run([sys.executable, str(PROBE), mode], env={**clean, **env},
                         capture_output=True, text=True, check=True, timeout=60)
    return json.loads(out.stdout)


def test_tuned_malloc_returns_freed_frame_sized_arrays_to_the_system() -> None:
    plain, tuned = _probe("plain"), _probe("tuned")
    assert tuned["applied"] == {"arena_max": 2, "mmap_threshold_bytes": 1 << 20}
    assert tuned["retained_mb"] < 10, tuned
    # glibc's default keeps them (the reason for the tuning)
    assert plain["retained_mb"] > 40, plain


@pytest.mark.parametrize("env", [{"MALLOC_ARENA_MAX": "4"},
                                 {"GLIBC_TUNABLES": "glibc.malloc.arena_max=4"}])
def test_malloc_settings_from_the_environment_are_left_alone(env: dict[str, str]) -> None:
    assert _probe("tuned", **env)["applied"] == {}
