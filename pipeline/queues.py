"""Bounded queues with a stated overflow policy and a close() that unblocks everyone.

- :class:`LatestQueue` is for live cameras: ``put`` never blocks; when full it evicts the
  oldest item (the newest frame wins) and counts the drop.
- :class:`BlockingQueue` is for offline replay: ``put`` blocks while full, so every item is
  processed, in order.

Both raise :class:`QueueClosed` from ``put`` after :meth:`close`, and from ``get`` once closed
*and* drained, so a consumer finishes the items already queued and then stops.
``get(timeout=...)`` raises :class:`queue.Empty` when nothing arrived in time.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from pipeline.errors import PipelineError

T = TypeVar("T")


class QueueClosed(PipelineError):
    """The queue was closed: no more puts, and nothing left to get."""


class _BoundedQueue(Generic[T]):
    def __init__(self, maxsize: int) -> None:
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize: expected an int >= 1, got {maxsize!r}")
        self.maxsize = maxsize
        self._items: deque[T] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False

    def get(self, timeout: float | None = None) -> T:
        """Oldest item; blocks up to ``timeout`` s (None = forever)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._not_empty:
            while not self._items:
                if self._closed:
                    raise QueueClosed("queue closed")
                if deadline is None:
                    self._not_empty.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise queue.Empty
                    self._not_empty.wait(remaining)
            item = self._items.popleft()
            self._not_full.notify()
            return item

    def close(self) -> None:
        """Refuse further puts and wake every waiting producer and consumer. Idempotent."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[T]:
        """Yield items until the queue is closed and drained."""
        while True:
            try:
                yield self.get()
            except QueueClosed:
                return


class LatestQueue(_BoundedQueue[T]):
    """Drop-oldest bounded queue for live frames: the newest item always gets in.

    ``on_evict`` (optional) is called with each evicted item, outside the queue's lock, so
    an owner can answer a request that will never be served.
    """

    def __init__(self, maxsize: int = 2, on_evict: Callable[[T], None] | None = None) -> None:
        super().__init__(maxsize)
        self._dropped = 0
        self._on_evict = on_evict

    def put(self, item: T) -> int:
        """Add ``item``; returns how many old items were evicted to make room (0 or 1)."""
        with self._lock:
            if self._closed:
                raise QueueClosed("put on a closed queue")
            evicted = []
            while len(self._items) >= self.maxsize:
                evicted.append(self._items.popleft())
            self._items.append(item)
            self._dropped += len(evicted)
            self._not_empty.notify()
        if self._on_evict is not None:
            for old in evicted:
                self._on_evict(old)
        return len(evicted)

    @property
    def dropped(self) -> int:
        """Items evicted unread since creation."""
        return self._dropped


class BlockingQueue(_BoundedQueue[T]):
    """Bounded FIFO whose ``put`` waits for room: nothing is ever dropped (offline replay)."""

    def put(self, item: T, timeout: float | None = None) -> None:
        """Add ``item``, waiting up to ``timeout`` s for room (raises :class:`queue.Full`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._not_full:
            while True:
                if self._closed:
                    raise QueueClosed("put on a closed queue")
                if len(self._items) < self.maxsize:
                    break
                if deadline is None:
                    self._not_full.wait()
                else:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise queue.Full
                    self._not_full.wait(remaining)
            self._items.append(item)
            self._not_empty.notify()
