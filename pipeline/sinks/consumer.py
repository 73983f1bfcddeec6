"""Consumer-group reader for the alert (and event) streams: the logic behind pipeline.consume.

Per loop: first this consumer's own pending entries (left by a previous run under the same
name), then entries other consumers left pending for ``claim_idle_ms`` (XAUTOCLAIM: they
crashed mid-batch), then new entries (XREADGROUP ``>``). Each entry is parsed, handed to the
handler and acknowledged only after the handler returns. Entries that cannot be parsed go to
the dead-letter stream (with the error and where they came from) and are acknowledged.
Delivery is at-least-once: duplicates are dropped by ``msg_id`` within this process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import redis

from pipeline.errors import SinkError
from pipeline.events import Message, MessageError, from_fields
from pipeline.secrets import mask_secrets

log = logging.getLogger(__name__)

Entry = tuple[str, str, dict | None]  # stream, entry id, fields (None: trimmed away)
Handler = Callable[[str, str, Message], None]


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class ConsumerStats:
    handled: int
    duplicates: int
    dead_lettered: int
    reclaimed: int
    acked: int


class StreamConsumer:
    def __init__(self, client: redis.Redis, streams: list[str], group: str, consumer: str,
                 dead_letter_stream: str, *, batch: int = 100, block_ms: int = 1000,
                 claim_idle_ms: int = 60_000, start_id: str = "0",
                 dedupe_window: int = 100_000) -> None:
        if not streams:
            raise ValueError("streams: expected at least one stream name")
        self.client = client
        self.streams = list(streams)
        self.group = group
        self.consumer = consumer
        self.dead_letter_stream = dead_letter_stream
        self.batch = batch
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.start_id = start_id
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dedupe_window = dedupe_window
        self._own_pending_done = False
        self._count = {"handled": 0, "duplicates": 0, "dead": 0, "reclaimed": 0, "acked": 0}

    def ensure_groups(self) -> None:
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, self.group, id=self.start_id, mkstream=True)
            except redis.ResponseError as err:
                if not str(err).startswith("BUSYGROUP"):
                    raise SinkError(f"cannot create group {self.group} on {stream}: "
                                    f"{mask_secrets(str(err))}") from err

    # -- reading ---------------------------------------------------------------------------
    def _flatten(self, reply: list | dict | None) -> list[Entry]:
        entries: list[Entry] = []
        if not reply:
            return entries
        items = reply.items() if isinstance(reply, dict) else reply
        for stream, messages in items:
            for entry_id, fields in (messages[0] if isinstance(reply, dict) else messages):
                entries.append((_text(stream), _text(entry_id), fields))
        return entries

    def read_own_pending(self) -> list[Entry]:
        """Entries delivered to this consumer name before and never acknowledged."""
        reply = self.client.xreadgroup(self.group, self.consumer,
                                       dict.fromkeys(self.streams, "0"), count=self.batch)
        return self._flatten(reply)

    def reclaim(self) -> list[Entry]:
        """Take over entries idle in other consumers' pending lists (XAUTOCLAIM)."""
        entries: list[Entry] = []
        for stream in self.streams:
            reply = self.client.xautoclaim(stream, self.group, self.consumer,
                                           min_idle_time=self.claim_idle_ms,
                                           start_id="0-0", count=self.batch)
            claimed = reply[1]
            for entry_id, fields in claimed:
                if entry_id is None:
                    continue
                entries.append((stream, _text(entry_id), fields))
            if len(reply) > 2:  # Redis 7: ids of pending entries already trimmed away
                for entry_id in reply[2]:
                    entries.append((stream, _text(entry_id), None))
        self._count["reclaimed"] += len(entries)
        if entries:
            log.info("reclaimed %d entries idle for over %d ms", len(entries),
                     self.claim_idle_ms)
        return entries

    def read_new(self, block_ms: int | None = None) -> list[Entry]:
        reply = self.client.xreadgroup(self.group, self.consumer,
                                       dict.fromkeys(self.streams, ">"), count=self.batch,
                                       block=self.block_ms if block_ms is None else block_ms)
        return self._flatten(reply)

    def next_batch(self) -> list[Entry]:
        if not self._own_pending_done:
            own = self.read_own_pending()
            if own:
                return own
            self._own_pending_done = True
        reclaimed = self.reclaim()
        return reclaimed or self.read_new()

    # -- handling --------------------------------------------------------------------------
    def handle(self, entry: Entry, handler: Handler) -> bool:
        """Handle and acknowledge one entry; True when the handler saw a new message."""
        stream, entry_id, fields = entry
        delivered = False
        if fields is None:
            log.warning("%s %s was trimmed before it was handled", stream, entry_id)
        else:
            try:
                message = from_fields(fields)
            except MessageError as err:
                self._dead_letter(stream, entry_id, fields, str(err))
            else:
                if message.msg_id in self._seen:
                    self._count["duplicates"] += 1
                else:
                    handler(stream, entry_id, message)
                    self._remember(message.msg_id)
                    self._count["handled"] += 1
                    delivered = True
        self.client.xack(stream, self.group, entry_id)
        self._count["acked"] += 1
        return delivered

    def _remember(self, msg_id: str) -> None:
        self._seen[msg_id] = None
        if len(self._seen) > self._dedupe_window:
            self._seen.popitem(last=False)

    def _dead_letter(self, stream: str, entry_id: str, fields: dict, error: str) -> None:
        record = {"source_stream": stream, "source_id": entry_id, "error": error,
                  "group": self.group, "consumer": self.consumer}
        for key, value in fields.items():
            record[f"field:{_text(key)}"] = _text(value)
        self.client.xadd(self.dead_letter_stream, record)
        self._count["dead"] += 1
        log.warning("dead-lettered %s %s: %s", stream, entry_id, error)

    def run(self, handler: Handler, *, max_messages: int | None = None,
            idle_exit_s: float | None = None, stop: threading.Event | None = None) -> None:
        """Loop until ``max_messages`` were handled, nothing arrived for ``idle_exit_s``, or
        ``stop`` is set (the entry in hand is finished and acknowledged first)."""
        stop = stop or threading.Event()
        self.ensure_groups()
        last_activity = time.monotonic()
        while not stop.is_set():
            entries = self.next_batch()
            if not entries:
                if idle_exit_s is not None and time.monotonic() - last_activity >= idle_exit_s:
                    return
                continue
            last_activity = time.monotonic()
            for entry in entries:
                if stop.is_set():
                    return  # the rest stay pending for us (next run) or for a reclaim
                self.handle(entry, handler)
                if max_messages is not None and self._count["handled"] >= max_messages:
                    return

    def stats(self) -> ConsumerStats:
        return ConsumerStats(handled=self._count["handled"],
                             duplicates=self._count["duplicates"],
                             dead_lettered=self._count["dead"],
                             reclaimed=self._count["reclaimed"], acked=self._count["acked"])
