"""Cross-camera batching: one owner per model and device runs the requests of many cameras
in shared batches (issue 16).

Cameras call :meth:`CrossCameraBatcher.submit` from their own threads and get a
:class:`~concurrent.futures.Future`; one owner thread takes up to ``max_batch`` requests,
waiting at most ``max_wait_s`` after the first for the batch to fill, runs
``run_batch(items) -> results`` once (e.g. frames letterboxed to a fixed-input detector's
size, stacked NCHW, one graph call on the GPU), and answers each request with its own result.

Overflow policy (the house rule for bounded queues): the queue holds ``queue_size``
requests. Live (``live=True``): a full queue evicts the *oldest* request, whose future fails
with :class:`RequestDropped`, and counts it; the newest frame wins, as in the camera queues.
Replay (``live=False``): ``submit`` blocks until there is room, so nothing is lost.
A batch whose ``run_batch`` raises (or returns the wrong number of results) fails only its
own requests; the owner carries on with the next batch.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from pipeline.errors import ModelError, PipelineError
from pipeline.queues import BlockingQueue, LatestQueue, QueueClosed

T = TypeVar("T")
R = TypeVar("R")


class RequestDropped(PipelineError):
    """A live request was evicted from a full batching queue before it ran."""


@dataclass(frozen=True)
class _Request(Generic[T, R]):
    item: T
    future: Future


@dataclass(frozen=True)
class BatcherStats:
    """Counters since start: ``batches`` run, ``items`` served, ``dropped`` (live evictions),
    ``failed_batches`` (run_batch raised)."""

    batches: int
    items: int
    dropped: int
    failed_batches: int

    @property
    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0


class CrossCameraBatcher(Generic[T, R]):
    """Batches ``submit``-ted items of many callers through ``run_batch`` on one thread.

    ``max_batch`` >= 1 items per call; ``max_wait_s`` >= 0 the longest the first request of a
    batch waits for company; ``queue_size`` >= ``max_batch`` bounded pending requests.
    Raises ValueError for bad sizes; :meth:`submit` raises PipelineError before
    :meth:`start` or after :meth:`stop`.
    """

    def __init__(self, run_batch: Callable[[Sequence[T]], Sequence[R]], *, max_batch: int,
                 max_wait_s: float, queue_size: int, live: bool, name: str = "batcher") -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch: expected >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s: expected >= 0, got {max_wait_s}")
        if queue_size < max_batch:
            raise ValueError(f"queue_size: expected >= max_batch ({max_batch}), got {queue_size}")
        self._run_batch = run_batch
        self._max_batch, self._max_wait_s = max_batch, max_wait_s
        self._live, self.name = live, name
        self._queue: LatestQueue[_Request] | BlockingQueue[_Request] = (
            LatestQueue(queue_size, on_evict=self._evicted) if live
            else BlockingQueue(queue_size))
        self._thread: threading.Thread | None = None
        self._batches = self._items = self._failed = 0

    @staticmethod
    def _evicted(request: _Request) -> None:
        request.future.set_exception(RequestDropped("dropped: the batching queue was full "
                                                    "and a newer request took its place"))

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Serve what is queued, then stop the owner. Safe to call twice."""
        self._queue.close()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def submit(self, item: T) -> Future:
        """Queue ``item``; the future gives its result, or raises RequestDropped (live, queue
        full) or what ``run_batch`` raised for its batch."""
        if self._thread is None:
            raise PipelineError(f"{self.name}: call start() before submit()")
        request = _Request(item, Future())
        try:
            self._queue.put(request)
        except QueueClosed as err:
            raise PipelineError(f"{self.name}: stopped") from err
        return request.future

    @property
    def stats(self) -> BatcherStats:
        dropped = self._queue.dropped if isinstance(self._queue, LatestQueue) else 0
        return BatcherStats(self._batches, self._items, dropped, self._failed)

    def _take_batch(self) -> list[_Request] | None:
        """Up to ``max_batch`` requests: the first waits, the rest until the deadline."""
        try:
            batch = [self._queue.get()]
        except QueueClosed:
            return None
        deadline = time.monotonic() + self._max_wait_s
        while len(batch) < self._max_batch:
            try:
                batch.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except (queue.Empty, QueueClosed):
                break
        return batch

    def _loop(self) -> None:
        while (batch := self._take_batch()) is not None:
            try:
                results = list(self._run_batch([r.item for r in batch]))
                if len(results) != len(batch):
                    raise ModelError(f"{self.name}: run_batch returned {len(results)} results "
                                     f"for {len(batch)} items")
            except Exception as err:  # isolate per batch: its requests fail, the owner lives
                self._failed += 1
                for request in batch:
                    request.future.set_exception(err)
                continue
            self._batches += 1
            self._items += len(batch)
            for request, result in zip(batch, results, strict=True):
                request.future.set_result(result)
