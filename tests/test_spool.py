"""The on-disk spool: order, persistence, bounds with events dropped before alerts."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import SpoolConfig
from pipeline.sinks.spool import DiskSpool, SpoolEntry


def entry(kind: str, n: int, size: int = 10) -> SpoolEntry:
    return SpoolEntry(kind, f"s:{kind}", {"msg_id": f"{kind}-{n}", "data": "x" * size}, 1000)


def ids(entries: list[SpoolEntry]) -> list[str]:
    return [e.fields["msg_id"] for e in entries]


def test_order_kept_and_survives_reopen(tmp_path: Path) -> None:
    spool = DiskSpool(SpoolConfig(dir=tmp_path))
    spool.open()
    spool.append([entry("event", i) for i in range(5)] + [entry("alert", 0)])
    spool.close()
    again = DiskSpool(SpoolConfig(dir=tmp_path))
    again.open()
    assert len(again) == 6
    head = again.peek(4)
    assert ids(head) == ["event-0", "event-1", "event-2", "event-3"]
    again.remove(head)
    assert ids(again.peek(10)) == ["event-4", "alert-0"]
    assert again.stats().removed == 4
    again.close()


def test_full_spool_drops_oldest_events_first_then_alerts(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    spool = DiskSpool(SpoolConfig(dir=tmp_path, max_messages=10))
    spool.open()
    spool.append([entry("alert", 0)] + [entry("event", i) for i in range(8)])
    spool.append([entry("alert", 1), entry("event", 8), entry("event", 9)])  # 12 > 10
    assert ids(spool.peek(20)) == ["alert-0", "event-2", "event-3", "event-4", "event-5",
                                   "event-6", "event-7", "alert-1", "event-8", "event-9"]
    spool.append([entry("alert", i) for i in range(2, 12)])  # only alerts fit in the end
    left = ids(spool.peek(20))
    assert left == [f"alert-{i}" for i in range(2, 12)]
    stats = spool.stats()
    assert stats.dropped_events == 10 and stats.dropped_alerts == 2 and stats.depth == 10
    assert "dropped the 2 oldest alert entries" in caplog.text
    spool.close()


def test_byte_bound(tmp_path: Path) -> None:
    spool = DiskSpool(SpoolConfig(dir=tmp_path, max_messages=10_000, max_mb=0.01))  # ~10 kB
    spool.open()
    spool.append([entry("event", i, size=1000) for i in range(30)])
    stats = spool.stats()
    assert stats.depth_bytes <= 0.01 * 2**20 and 5 <= stats.depth < 30
    assert stats.dropped_events == 30 - stats.depth
    assert ids(spool.peek(1)) == [f"event-{30 - stats.depth}"]  # the newest were kept
    spool.close()
