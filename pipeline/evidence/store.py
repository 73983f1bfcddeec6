"""Where evidence files go: a small store interface and the local-directory store.

Keys are relative POSIX paths (``<camera>/<yyyymmdd>/<alert msg_id>/clip.mp4``); a store
turns a key into the URI that alert messages carry (the local store: the key itself,
relative to ``evidence.dir``). An object store (S3, GCS...) implements the same
:class:`EvidenceStore` protocol.

The local store keeps files readable by the service user only (``file_mode`` 0600, folders
``dir_mode`` 0700, set explicitly whatever the umask), writes each file atomically (a
temporary file renamed into place), and appends one JSON line per write and per delete to
``audit.jsonl`` in its root (append-only, 0600, never trimmed by retention), with a log line
for each. Retention (:meth:`LocalEvidenceStore.enforce_retention`) works on whole alert
folders, so an alert never keeps its crops without its clip: it deletes the folders whose
newest file is older than ``max_age_h``, then the oldest folders until the total is at most
``max_total_mb``; the audit log does not count. A delete is audited with the file's sha256.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

from pipeline.config import EvidenceConfig
from pipeline.errors import EvidenceError

log = logging.getLogger(__name__)

AUDIT_LOG = "audit.jsonl"
_TMP_MARK = ".tmp-"


@dataclass(frozen=True)
class StoredObject:
    """A file the store holds: its URI, SHA-256 (hex) and size in bytes."""

    key: str
    uri: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True)
class RetentionResult:
    deleted_by_age: int
    deleted_by_size: int
    total_bytes: int  # what the store holds afterwards


class EvidenceStore(Protocol):
    """What the recorder needs from a store. Implementations are called from one thread."""

    @property
    def location(self) -> str:
        """Where the evidence goes, for logs and summaries (a folder or a bucket URI)."""

    def uri_for(self, key: str) -> str:
        """The URI that will name ``key`` once it is written (alert messages carry it)."""

    def put(self, key: str, data: bytes, reason: str) -> StoredObject:
        """Store ``data`` under ``key`` (replacing it); audit it with ``reason``. Raises
        EvidenceError."""

    def enforce_retention(self) -> RetentionResult:
        """Delete what the retention limits no longer allow; audit each delete."""


def check_key(key: str) -> PurePosixPath:
    """``key`` as a safe relative path (no absolute path, no ``..``, not the audit log)."""
    path = PurePosixPath(key)
    if (not key or path.is_absolute() or any(part in ("", ".", "..") for part in path.parts)
            or path.name == AUDIT_LOG or _TMP_MARK in path.name):
        raise EvidenceError(f"evidence key: expected a relative path without '..', got {key!r}")
    return path


class LocalEvidenceStore:
    """Evidence files under one local folder; see the module doc."""

    def __init__(self, cfg: EvidenceConfig) -> None:
        self.root = Path(cfg.dir)
        self.file_mode = cfg.file_mode_bits
        self.dir_mode = cfg.dir_mode_bits
        self.max_age_s = (cfg.retention.max_age_h * 3600.0
                          if cfg.retention.max_age_h is not None else None)
        self.max_total_bytes = (int(cfg.retention.max_total_mb * 1024 * 1024)
                                if cfg.retention.max_total_mb is not None else None)
        self._lock = threading.Lock()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            os.chmod(self.root, self.dir_mode)
        except OSError as err:
            raise EvidenceError(f"evidence.dir {self.root}: cannot create it or set its mode "
                                f"{self.dir_mode:04o}: {err.strerror}") from err

    @property
    def location(self) -> str:
        return str(self.root)

    def uri_for(self, key: str) -> str:
        return str(check_key(key))

    def put(self, key: str, data: bytes, reason: str) -> StoredObject:
        relative = check_key(key)
        target = self.root.joinpath(*relative.parts)
        digest = hashlib.sha256(data).hexdigest()
        with self._lock:
            try:
                self._make_dirs(target.parent)
                tmp = target.with_name(f".{target.name}{_TMP_MARK}{os.getpid()}")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, self.file_mode)
                try:
                    os.fchmod(fd, self.file_mode)
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view):]
                finally:
                    os.close(fd)
                os.replace(tmp, target)
            except OSError as err:
                raise EvidenceError(f"cannot write evidence {key} under {self.root}: "
                                    f"{err.strerror}") from err
            self._audit("write", key, len(data), digest, reason)
        return StoredObject(key, self.uri_for(key), digest, len(data))

    def enforce_retention(self) -> RetentionResult:
        with self._lock:
            groups: dict[Path, list[tuple[Path, float, int]]] = {}
            for item in self._files():
                groups.setdefault(item[0].parent, []).append(item)
            # (newest mtime, folder, files, bytes) per alert folder, oldest folder first
            folders = sorted((max(m for _p, m, _s in files), str(folder), files,
                              sum(size for _p, _m, size in files))
                             for folder, files in groups.items())
            now = time.time()
            by_age = by_size = 0
            kept = []
            for newest, _folder, files, size in folders:
                if self.max_age_s is not None and now - newest > self.max_age_s:
                    reason = f"retention: older than {self.max_age_s / 3600:g} h"
                    by_age += sum(self._delete(path, n, reason) for path, _m, n in files)
                else:
                    kept.append((files, size))
            total = sum(size for _files, size in kept)
            for files, size in kept:
                if self.max_total_bytes is None or total <= self.max_total_bytes:
                    break
                reason = f"retention: store above {self.max_total_bytes / 1024 / 1024:g} MB"
                by_size += sum(self._delete(path, n, reason) for path, _m, n in files)
                total -= size
            self._remove_empty_dirs()
        return RetentionResult(by_age, by_size, total)

    def total_bytes(self) -> int:
        with self._lock:
            return sum(size for _path, _mtime, size in self._files())

    # -- internals (under the lock) --------------------------------------------------------
    def _files(self) -> list[tuple[Path, float, int]]:
        found = []
        for dirpath, _dirs, names in os.walk(self.root):
            for name in names:
                path = Path(dirpath) / name
                if path.parent == self.root and name == AUDIT_LOG:
                    continue
                try:
                    stat = path.stat()
                except OSError:
                    continue
                found.append((path, stat.st_mtime, stat.st_size))
        found.sort(key=lambda item: (item[1], str(item[0])))
        return found

    def _delete(self, path: Path, size: int, reason: str) -> int:
        key = path.relative_to(self.root).as_posix()
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            path.unlink()
        except FileNotFoundError:
            return 0
        except OSError as err:
            log.error("evidence: cannot delete %s: %s", key, err.strerror)
            return 0
        self._audit("delete", key, size, digest, reason)
        return 1

    def _make_dirs(self, folder: Path) -> None:
        missing = []
        while folder != self.root and not folder.is_dir():
            missing.append(folder)
            folder = folder.parent
        for path in reversed(missing):
            path.mkdir(mode=self.dir_mode, exist_ok=True)
            os.chmod(path, self.dir_mode)

    def _remove_empty_dirs(self) -> None:
        for dirpath, _dirs, _names in os.walk(self.root, topdown=False):
            path = Path(dirpath)
            if path != self.root:
                try:
                    path.rmdir()  # only empty folders go
                except OSError:
                    continue

    def _audit(self, action: str, key: str, size: int, sha256: str | None,
               reason: str) -> None:
        record = {"ts": round(time.time(), 3), "action": action, "key": key,
                  "bytes": size, "sha256": sha256, "reason": reason}
        line = json.dumps(record, separators=(",", ":")) + "\n"
        path = self.root / AUDIT_LOG
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, self.file_mode)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
        except OSError as err:
            log.error("evidence: cannot append to the audit log %s: %s", path, err.strerror)
        log.info("evidence %s %s (%d bytes%s): %s", action, key, size,
                 f", sha256 {sha256[:12]}" if sha256 else "", reason)
