"""Bounded on-disk spool (SQLite, WAL) holding stream entries while Redis is unreachable.

Entries keep their insertion order and are flushed in that order. When the spool is over
``max_messages`` or ``max_mb``, the oldest face-track events are dropped first, then evidence
references, and alerts only when nothing else is left; every drop is counted and logged. It
survives a process restart: the next run flushes what the previous one could not deliver.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import SpoolConfig
from pipeline.errors import SinkError

log = logging.getLogger(__name__)

KINDS = ("event", "evidence", "alert")  # the order in which a full spool drops
_ROW_OVERHEAD_BYTES = 64


@dataclass(frozen=True)
class SpoolEntry:
    """One stream entry waiting to be written; ``row_id`` is set once it is in the spool."""

    kind: str  # "event", "evidence" or "alert"
    stream: str
    fields: dict[str, str]
    maxlen: int
    row_id: int = 0

    def inherited(self, spool: DiskSpool) -> bool:
        """Left in ``spool`` by a previous run (not output of this one)."""
        return 0 < self.row_id <= spool.inherited_last_row_id


@dataclass(frozen=True)
class SpoolStats:
    depth: int
    depth_bytes: int
    appended: int
    removed: int
    dropped_events: int
    dropped_alerts: int


class DiskSpool:
    def __init__(self, cfg: SpoolConfig, filename: str = "spool.sqlite3") -> None:
        self.cfg = cfg
        self.path = Path(cfg.dir) / filename
        self._max_bytes = int(cfg.max_mb * 1024 * 1024)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._depth = 0
        self._bytes = 0
        self._appended = 0
        self._removed = 0
        self._dropped = dict.fromkeys(KINDS, 0)
        # Rows up to this id were left by a previous run (not this run's output).
        self.inherited_last_row_id = 0

    def open(self) -> None:
        if self._db is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("CREATE TABLE IF NOT EXISTS spool (id INTEGER PRIMARY KEY AUTOINCREMENT,"
                       " kind TEXT NOT NULL, stream TEXT NOT NULL, maxlen INTEGER NOT NULL,"
                       " payload TEXT NOT NULL)")
            db.execute("CREATE INDEX IF NOT EXISTS spool_kind ON spool (kind, id)")
            depth, size, last_id = db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(payload)), 0), COALESCE(MAX(id), 0) "
                "FROM spool").fetchone()
        except sqlite3.Error as err:
            raise SinkError(f"spool: cannot open {self.path}: {err}") from err
        self._db = db
        self._depth = int(depth)
        self._bytes = int(size) + _ROW_OVERHEAD_BYTES * self._depth
        self.inherited_last_row_id = int(last_id)
        if self._depth:
            log.info("spool %s holds %d entries from a previous run", self.path, self._depth)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise SinkError("spool is not open")
        return self._db

    def __len__(self) -> int:
        return self._depth

    def append(self, entries: Iterable[SpoolEntry]) -> None:
        rows = [(e.kind, e.stream, e.maxlen, json.dumps(e.fields, separators=(",", ":")))
                for e in entries]
        if not rows:
            return
        with self._lock:
            db = self._conn()
            try:
                with db:
                    db.execute("BEGIN")
                    db.executemany(
                        "INSERT INTO spool (kind, stream, maxlen, payload) VALUES (?, ?, ?, ?)",
                        rows)
            except sqlite3.Error as err:
                raise SinkError(f"spool: cannot write {self.path}: {err}") from err
            self._depth += len(rows)
            self._bytes += sum(len(r[3]) + _ROW_OVERHEAD_BYTES for r in rows)
            self._appended += len(rows)
            self._enforce_bounds(db)

    def _over(self) -> int:
        """How many entries to drop to be within both bounds (bytes estimated by average)."""
        excess = max(self._depth - self.cfg.max_messages, 0)
        if self._bytes > self._max_bytes and self._depth:
            average = self._bytes / self._depth
            excess = max(excess, int((self._bytes - self._max_bytes) / average) + 1)
        return min(excess, self._depth)

    def _enforce_bounds(self, db: sqlite3.Connection) -> None:
        for kind in KINDS:  # events first, alerts last
            excess = self._over()
            if excess <= 0:
                return
            try:
                with db:
                    db.execute("BEGIN")
                    dropped = db.execute(
                        "DELETE FROM spool WHERE id IN (SELECT id FROM spool WHERE kind = ? "
                        "ORDER BY id LIMIT ?) RETURNING LENGTH(payload)",
                        (kind, excess)).fetchall()
            except sqlite3.Error as err:
                raise SinkError(f"spool: cannot trim {self.path}: {err}") from err
            if dropped:
                self._depth -= len(dropped)
                self._bytes -= sum(int(n) + _ROW_OVERHEAD_BYTES for (n,) in dropped)
                self._dropped[kind] += len(dropped)
                log.warning("spool full (%d entries, max %d; %.1f MB, max %.1f MB): dropped the "
                            "%d oldest %s entries (%d %s dropped so far)",
                            self._depth, self.cfg.max_messages, self._bytes / 2**20,
                            self.cfg.max_mb, len(dropped), kind, self._dropped[kind], kind)

    def peek(self, limit: int) -> list[SpoolEntry]:
        """The oldest ``limit`` entries, in order, without removing them."""
        with self._lock:
            try:
                rows = self._conn().execute(
                    "SELECT id, kind, stream, maxlen, payload FROM spool ORDER BY id LIMIT ?",
                    (limit,)).fetchall()
            except sqlite3.Error as err:
                raise SinkError(f"spool: cannot read {self.path}: {err}") from err
        return [SpoolEntry(kind, stream, json.loads(payload), maxlen, row_id)
                for row_id, kind, stream, maxlen, payload in rows]

    def remove(self, entries: Iterable[SpoolEntry]) -> None:
        """Remove delivered entries (those still present; a drop may have beaten us to one)."""
        ids = [e.row_id for e in entries]
        if not ids:
            return
        with self._lock:
            db = self._conn()
            removed_bytes = 0
            removed = 0
            try:
                with db:
                    db.execute("BEGIN")
                    for start in range(0, len(ids), 500):
                        chunk = ids[start:start + 500]
                        marks = ",".join("?" * len(chunk))
                        gone = db.execute(f"DELETE FROM spool WHERE id IN ({marks}) "  # noqa: S608
                                          "RETURNING LENGTH(payload)", chunk).fetchall()
                        removed += len(gone)
                        removed_bytes += sum(int(n) + _ROW_OVERHEAD_BYTES for (n,) in gone)
            except sqlite3.Error as err:
                raise SinkError(f"spool: cannot update {self.path}: {err}") from err
            self._depth -= removed
            self._bytes -= removed_bytes
            self._removed += removed

    def stats(self) -> SpoolStats:
        return SpoolStats(depth=self._depth, depth_bytes=self._bytes, appended=self._appended,
                          removed=self._removed, dropped_events=self._dropped["event"],
                          dropped_alerts=self._dropped["alert"])
