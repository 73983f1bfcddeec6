"""usable_cpus: affinity capped by the cgroup CPU quota (pipeline/cpus.py), and the detector's
concurrent-pass slots it sizes (pipeline/detect/base.py)."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import DetectorConfig
from pipeline.cpus import cgroup_cpu_quota, usable_cpus
from pipeline.detect.base import Detector, FaceArrays
from pipeline.detect.scan import FaceSizeRange

AFFINITY = len(os.sched_getaffinity(0))


def _write(root: Path, name: str, text: str) -> None:
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota(tmp_path: Path) -> None:
    _write(tmp_path, "cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.5
    assert usable_cpus(tmp_path) == min(AFFINITY, 2)  # 1.5 CPUs: two threads can run


def test_cgroup_v2_without_quota(tmp_path: Path) -> None:
    _write(tmp_path, "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(tmp_path) is None
    assert usable_cpus(tmp_path) == AFFINITY


def test_cgroup_v1_quota_and_none(tmp_path: Path) -> None:
    _write(tmp_path, "cpu/cpu.cfs_quota_us", "100000\n")
    _write(tmp_path, "cpu/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(tmp_path) == 1.0
    assert usable_cpus(tmp_path) == 1
    _write(tmp_path, "cpu/cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_quota(tmp_path) is None


def test_no_cgroup_files_or_garbage(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path) is None
    _write(tmp_path, "cpu.max", "garbage\n")
    assert cgroup_cpu_quota(tmp_path) is None
    assert usable_cpus(tmp_path) == AFFINITY


class _SlowDetector(Detector):
    """Counts overlapping passes; fails on request (a backend that raises mid-pass)."""

    name = "slow"

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__(cfg)
        self.lock = threading.Lock()
        self.running = self.most = 0
        self.fail = False

    def _load(self) -> None:
        pass

    def _detect_image(self, image_bgr: np.ndarray, sizes: FaceSizeRange) -> FaceArrays:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            threading.Event().wait(0.01)
            if self.fail:
                raise RuntimeError("backend failed mid-pass")
            return FaceArrays.empty()
        finally:
            with self.lock:
                self.running -= 1


def _run_callers(detector: Detector, callers: int) -> None:
    image = np.zeros((64, 64, 3), np.uint8)
    threads = [threading.Thread(target=lambda: [detector.detect(image) for _ in range(5)])
               for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)


@pytest.mark.parametrize(("cpus", "threads", "configured", "expected"),
                         [(4, 1, None, 4), (4, 2, None, 2), (2, 4, None, 1), (8, 1, 3, 3)])
def test_passes_follow_cpus_threads_and_config(monkeypatch: pytest.MonkeyPatch, cpus: int,
                                               threads: int, configured: int | None,
                                               expected: int) -> None:
    monkeypatch.setattr("pipeline.detect.base.usable_cpus", lambda: cpus)
    detector = _SlowDetector(DetectorConfig(threads=threads,
                                            max_concurrent_passes=configured))
    detector.start()
    assert detector.max_concurrent_passes == expected
    _run_callers(detector, 6)
    assert detector.most == expected  # six callers: every slot used, never more


def test_a_failing_pass_gives_its_slot_back() -> None:
    detector = _SlowDetector(DetectorConfig(max_concurrent_passes=1))
    detector.start()
    detector.fail = True
    image = np.zeros((64, 64, 3), np.uint8)
    errors: list[BaseException] = []

    def calls() -> None:
        for _ in range(3):  # with the slot kept, the second call would wait for ever
            try:
                detector.detect(image)
            except RuntimeError as err:
                errors.append(err)

    thread = threading.Thread(target=calls, daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive(), "a failed pass kept its slot"
    assert len(errors) == 3 and "mid-pass" in str(errors[0])
    detector.fail = False
    assert detector.detect(image) == []
