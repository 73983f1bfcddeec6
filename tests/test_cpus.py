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


def _proc(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


def test_cgroup_v2_quota_at_the_top(tmp_path: Path) -> None:
    """A container with its own cgroup namespace: path ``/``, its limit at the top."""
    proc = _proc(tmp_path, "0::/\n")
    _write(tmp_path / "fs", "cpu.max", "150000 100000\n")
    assert cgroup_cpu_quota(tmp_path / "fs", proc) == 1.5
    assert usable_cpus(tmp_path / "fs", proc) == min(AFFINITY, 2)  # 1.5 CPUs: two threads


def test_cgroup_v2_service_and_its_parents(tmp_path: Path) -> None:
    """A systemd service (``CPUQuota=``) below a slice with a smaller limit: the smallest of
    the path's cgroups binds; ``max`` means none."""
    fs = tmp_path / "fs"
    proc = _proc(tmp_path, "0::/system.slice/cctv.service\n")
    _write(fs, "cpu.max", "max 100000\n")
    _write(fs, "system.slice/cpu.max", "100000 100000\n")
    _write(fs, "system.slice/cctv.service/cpu.max", "300000 100000\n")
    assert cgroup_cpu_quota(fs, proc) == 1.0
    _write(fs, "system.slice/cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(fs, proc) == 3.0
    _write(fs, "system.slice/cctv.service/cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(fs, proc) is None
    assert usable_cpus(fs, proc) == AFFINITY


def test_cgroup_v1_quota_and_none(tmp_path: Path) -> None:
    fs = tmp_path / "fs"
    proc = _proc(tmp_path, "4:memory:/x\n2:cpu,cpuacct:/kubepods/pod1\n0::/\n")
    _write(fs, "cpu,cpuacct/kubepods/pod1/cpu.cfs_quota_us", "200000\n")
    _write(fs, "cpu,cpuacct/kubepods/pod1/cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(fs, proc) == 2.0
    _write(fs, "cpu,cpuacct/kubepods/pod1/cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_quota(fs, proc) is None


def test_no_cgroup_files_or_garbage(tmp_path: Path) -> None:
    fs = tmp_path / "fs"
    assert cgroup_cpu_quota(fs, tmp_path / "no-proc-file") is None
    _write(fs, "cpu.max", "garbage\n")
    assert cgroup_cpu_quota(fs, _proc(tmp_path, "0::/\n")) is None
    _write(fs, "cpu.max", "100000 0\n")  # a zero period: ignored, not a crash
    assert cgroup_cpu_quota(fs, _proc(tmp_path, "0::/\n")) is None
    assert usable_cpus(fs, _proc(tmp_path, "0::/\n")) == AFFINITY


class _SlowDetector(Detector):
    """Counts overlapping passes; fails on request (a backend that raises mid-pass)."""

    name = "slow"

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__(cfg)
        self.lock = threading.Condition()
        self.running = self.most = 0
        self.fail = False

    def _load(self) -> None:
        pass

    def _detect_image(self, image_bgr: np.ndarray, sizes: FaceSizeRange) -> FaceArrays:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.lock.notify_all()
            # hold the slot until every slot is taken (or 0.2 s at the end of the run), so
            # the count of overlapping passes does not depend on thread timing
            self.lock.wait_for(lambda: self.running >= self.max_concurrent_passes, 0.2)
        try:
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
