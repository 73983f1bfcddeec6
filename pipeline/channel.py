"""The ordered channel from the live cameras' analysis threads to the one emotion worker.

Each camera puts its selected crops and, after them, a :class:`TracksEnded` marker for the
tracks that ended on that frame. Items come out in the order they went in, so a track's end
never overtakes its last crop, and the output owner sees per camera exactly the sequence that
offline replay produces.

Overflow policy: at most ``max_crops`` crops wait; when a camera adds one more, the oldest
waiting crop is dropped and counted (live analysis must not fall further and further behind).
Markers are never dropped, whatever the load: losing one would leave a track open forever.
:meth:`close` lets the consumer drain what is queued, then :meth:`get_batch` raises
:class:`~pipeline.queues.QueueClosed`.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

from pipeline.analyze import CropRequest
from pipeline.queues import QueueClosed


@dataclass(frozen=True)
class TracksEnded:
    """These tracks of ``camera_id`` ended; anything after this belongs to other tracks."""

    camera_id: str
    track_ids: tuple[int, ...]


ChannelItem = CropRequest | TracksEnded


class AnalysisChannel:
    def __init__(self, max_crops: int) -> None:
        if max_crops < 1:
            raise ValueError(f"max_crops: expected >= 1, got {max_crops}")
        self.max_crops = max_crops
        self._items: deque[ChannelItem] = deque()
        self._crops = 0
        self._closed = False
        self._cond = threading.Condition()

    def put_crop(self, crop: CropRequest) -> int:
        """Queue a crop; return how many older crops were dropped to make room (0 or 1).

        Raises QueueClosed after :meth:`close`."""
        with self._cond:
            if self._closed:
                raise QueueClosed("analysis channel closed")
            dropped = 0
            if self._crops >= self.max_crops:
                for i, item in enumerate(self._items):
                    if isinstance(item, CropRequest):
                        del self._items[i]
                        self._crops -= 1
                        dropped = 1
                        break
            self._items.append(crop)
            self._crops += 1
            self._cond.notify()
            return dropped

    def put_marker(self, marker: TracksEnded) -> None:
        """Queue a marker behind the crops already queued; never dropped.

        Raises QueueClosed after :meth:`close`."""
        with self._cond:
            if self._closed:
                raise QueueClosed("analysis channel closed")
            self._items.append(marker)
            self._cond.notify()

    def get_batch(self, max_crops: int, max_wait_s: float,
                  first_wait_s: float = 0.5) -> list[ChannelItem]:
        """Items in order, holding up to ``max_crops`` crops (markers ride along).

        Waits up to ``first_wait_s`` for the first item (then returns ``[]``), and up to
        ``max_wait_s`` more for further crops to fill the batch. Raises QueueClosed once the
        channel is closed and drained."""
        with self._cond:
            deadline = time.monotonic() + first_wait_s
            while not self._items:
                if self._closed:
                    raise QueueClosed("analysis channel closed")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return []
                self._cond.wait(remaining)
            fill_deadline = time.monotonic() + max_wait_s
            while (self._crops < max_crops and not self._closed
                   and time.monotonic() < fill_deadline):
                self._cond.wait(max(fill_deadline - time.monotonic(), 0.0))
            batch: list[ChannelItem] = []
            taken = 0
            while self._items:
                item = self._items[0]
                if isinstance(item, CropRequest):
                    if taken >= max_crops:
                        break
                    taken += 1
                    self._crops -= 1
                batch.append(self._items.popleft())
            return batch

    def close(self) -> None:
        """Refuse further puts; wake the consumer so it drains and stops. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
