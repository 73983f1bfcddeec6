"""The local evidence store: modes 0600/0700, atomic writes with SHA-256, an audit line for
every write and delete, retention by age and by total size."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import time
from pathlib import Path

import pytest

from pipeline.config import EvidenceConfig
from pipeline.errors import EvidenceError
from pipeline.evidence.store import AUDIT_LOG, LocalEvidenceStore


def _store(tmp_path: Path, **retention: object) -> LocalEvidenceStore:
    return LocalEvidenceStore(EvidenceConfig(dir=tmp_path / "evidence", retention=retention))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _audit(store: LocalEvidenceStore) -> list[dict]:
    return [json.loads(line) for line in (store.root / AUDIT_LOG).read_text().splitlines()]


def test_put_writes_private_files_with_sha256_and_audits(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)  # a permissive umask must not loosen the modes
    try:
        store = _store(tmp_path)
        stored = store.put("cam/20250101/abc/clip.mp4", b"video" * 100, reason="clip of alert")
    finally:
        os.umask(old_umask)
    path = store.root / "cam/20250101/abc/clip.mp4"
    assert path.read_bytes() == b"video" * 100
    assert stored.sha256 == hashlib.sha256(b"video" * 100).hexdigest()
    assert stored.size_bytes == 500 and stored.uri == "cam/20250101/abc/clip.mp4"
    assert _mode(path) == 0o600 and _mode(store.root / AUDIT_LOG) == 0o600
    for folder in (store.root, store.root / "cam", store.root / "cam/20250101",
                   store.root / "cam/20250101/abc"):
        assert _mode(folder) == 0o700, folder
    assert not [p for p in path.parent.iterdir() if p.name != "clip.mp4"], "no temp file left"
    (record,) = _audit(store)
    assert record["action"] == "write" and record["key"] == "cam/20250101/abc/clip.mp4"
    assert record["sha256"] == stored.sha256 and record["bytes"] == 500


@pytest.mark.parametrize("key", ["/abs/clip.mp4", "../escape.mp4", "a/../../b", "", AUDIT_LOG])
def test_keys_outside_the_store_are_refused(tmp_path: Path, key: str) -> None:
    with pytest.raises(EvidenceError, match="relative path"):
        _store(tmp_path).put(key, b"x", reason="test")


def test_retention_deletes_whole_alert_folders_by_age_then_by_size_and_audits_each(
        tmp_path: Path) -> None:
    store = _store(tmp_path, max_age_h=1.0, max_total_mb=0.001)  # 1048 bytes
    now = time.time()
    # one folder per alert; a folder's age is its newest file's
    ages_h = {"a/clip.bin": 5.0, "a/crop.bin": 2.0,  # alert a: 2 h old
              "b/clip.bin": 0.6, "b/crop.bin": 0.5,  # alert b: 0.5 h
              "c/clip.bin": 0.2, "d/clip.bin": 0.1}
    for key, age_h in ages_h.items():
        store.put(key, b"x" * 400, reason="test")
        os.utime(store.root / key, (now - age_h * 3600, now - age_h * 3600))

    result = store.enforce_retention()

    assert result.deleted_by_age == 2  # alert a, both files: older than 1 h
    assert result.deleted_by_size == 2  # 4 x 400 > 1048: the oldest alert left, b, goes whole
    remaining = sorted(p.relative_to(store.root).as_posix()
                       for p in store.root.rglob("*.bin"))
    assert remaining == ["c/clip.bin", "d/clip.bin"], "no alert keeps part of its files"
    assert result.total_bytes == 800 == store.total_bytes()
    assert not (store.root / "a").exists(), "emptied folders are removed"
    deletes = [r for r in _audit(store) if r["action"] == "delete"]
    assert [r["key"] for r in deletes] == ["a/clip.bin", "a/crop.bin", "b/clip.bin",
                                           "b/crop.bin"]
    assert "older than" in deletes[0]["reason"] and "above" in deletes[2]["reason"]
    writes = {r["key"]: r["sha256"] for r in _audit(store) if r["action"] == "write"}
    assert all(r["sha256"] == writes[r["key"]] for r in deletes), "deletes name what went"
    assert (store.root / AUDIT_LOG).exists(), "retention never deletes the audit log"


def test_no_limits_keep_everything(tmp_path: Path) -> None:
    store = _store(tmp_path, max_age_h=None, max_total_mb=None)
    store.put("k/f.bin", b"x" * 10, reason="test")
    os.utime(store.root / "k/f.bin", (0, 0))
    assert store.enforce_retention().deleted_by_age == 0
    assert (store.root / "k/f.bin").exists()


def test_ring_must_hold_the_clip_window() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="ring_max_s"):
        EvidenceConfig(pre_s=10, post_s=10, ring_max_s=20)
    assert EvidenceConfig().file_mode_bits == 0o600 and EvidenceConfig().dir_mode_bits == 0o700


@pytest.mark.parametrize(("modes", "message"), [
    ({"file_mode": "0644"}, "file_mode 0644 gives others access"),
    ({"file_mode": "0606"}, "file_mode 0606 gives others access"),
    ({"dir_mode": "0755"}, "dir_mode 0755 gives others access"),
    ({"file_mode": "0400"}, "file_mode 0400: the service user needs 0600"),
    ({"dir_mode": "0600"}, "dir_mode 0600: the service user needs 0700"),
])
def test_evidence_modes_that_expose_faces_or_lock_out_the_service_are_refused(
        modes: dict, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        EvidenceConfig(**modes)
    # a review service in the same group may read
    assert EvidenceConfig(file_mode="0640", dir_mode="0750").file_mode_bits == 0o640
