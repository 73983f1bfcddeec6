"""Bounded queues: overflow policy, drop counting and close() unblocking waiters."""

from __future__ import annotations

import queue
import threading
import time

import pytest

from pipeline.queues import BlockingQueue, LatestQueue, QueueClosed


def test_latest_queue_keeps_newest_and_counts_drops() -> None:
    q: LatestQueue[int] = LatestQueue(maxsize=2)
    evicted = [q.put(i) for i in range(5)]
    assert evicted == [0, 0, 1, 1, 1]
    assert q.dropped == 3
    assert [q.get(timeout=0.1), q.get(timeout=0.1)] == [3, 4]
    with pytest.raises(queue.Empty):
        q.get(timeout=0.05)


def test_close_unblocks_a_waiting_consumer_and_drains_first() -> None:
    q: LatestQueue[int] = LatestQueue(maxsize=4)
    results: list[object] = []

    def consume() -> None:
        try:
            results.extend(q)  # iterates until closed and drained
        finally:
            results.append("done")

    q.put(1)
    consumer = threading.Thread(target=consume)
    consumer.start()
    q.put(2)
    q.close()
    consumer.join(timeout=2)
    assert not consumer.is_alive()
    assert results == [1, 2, "done"]
    with pytest.raises(QueueClosed):
        q.put(3)


def test_blocking_queue_blocks_when_full_until_consumed() -> None:
    q: BlockingQueue[int] = BlockingQueue(maxsize=1)
    q.put(0)
    with pytest.raises(queue.Full):
        q.put(1, timeout=0.05)
    put_done = threading.Event()

    def produce() -> None:
        q.put(1)
        put_done.set()

    producer = threading.Thread(target=produce)
    producer.start()
    assert not put_done.wait(0.1)  # still blocked: nothing is dropped
    assert q.get(timeout=1) == 0
    assert put_done.wait(2)
    assert q.get(timeout=1) == 1
    producer.join(timeout=2)


def test_blocking_queue_close_wakes_a_blocked_producer() -> None:
    q: BlockingQueue[int] = BlockingQueue(maxsize=1)
    q.put(0)
    outcome: list[str] = []

    def produce() -> None:
        try:
            q.put(1)
        except QueueClosed:
            outcome.append("closed")

    producer = threading.Thread(target=produce)
    producer.start()
    time.sleep(0.05)  # let it block; the assertion below does not depend on this
    q.close()
    producer.join(timeout=2)
    assert outcome == ["closed"]
    assert q.get(timeout=0.1) == 0  # what was queued before close is still delivered
    with pytest.raises(QueueClosed):
        q.get(timeout=0.1)


def test_maxsize_is_validated() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        LatestQueue(maxsize=0)
