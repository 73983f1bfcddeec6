"""Consumer-group reader for the alert (and event) streams: the logic behind pipeline.consume.

Per loop: first this consumer's own pending entries (left by a previous run under the same
name, or unacknowledged when the connection dropped), then entries other consumers left
pending for ``claim_idle_ms`` (XAUTOCLAIM: they crashed mid-batch), then new entries
(XREADGROUP ``>``). Each entry is parsed, handed to the handler and acknowledged only after
the handler returns. Delivery is at-least-once: duplicates are dropped by ``msg_id`` within
this process.

What can go wrong, and what happens:

- An entry that cannot be parsed goes to the dead-letter stream (with the error and where it
  came from) and is acknowledged.
- A pending entry whose data retention trimmed away before it was acknowledged comes back
  without fields (redis-py gives ``{}``; XAUTOCLAIM lists its id apart). It is acknowledged,
  counted as lost and logged; never dead-lettered (there is nothing to parse).
- NOGROUP: the group vanished (the stream was evicted or deleted, or Redis restarted without
  its data). The group is re-created from ``0``, so everything the stream holds now is
  delivered (``$`` would skip what the pipeline wrote between the stream's re-creation and
  ours); what may be missing is logged: entries after the last one this consumer read and
  before the oldest the stream holds now.
- Transient errors (connection refused or reset, timeouts, LOADING, OOM, READONLY...):
  reconnect with exponential backoff and jitter, then re-read our own pending entries first.
- Permanent errors (NOPERM, WRONGPASS, NOAUTH, TLS): RedisRefusedError.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import redis

from pipeline.config import ReconnectConfig
from pipeline.errors import RedisRefusedError, RedisUnavailableError
from pipeline.events import Message, MessageError, from_fields
from pipeline.sinks.faults import classify_redis_error, explain_refusal, is_nogroup
from pipeline.sinks.probe import client_username

log = logging.getLogger(__name__)

Entry = tuple[str, str, dict | None]  # stream, entry id, fields ({} or None: trimmed away)
Handler = Callable[[str, str, Message], None]
RECREATE_FROM_ID = "0"


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class ConsumerStats:
    handled: int
    duplicates: int
    dead_lettered: int
    reclaimed: int
    acked: int
    lost: int = 0  # pending entries trimmed before they were acknowledged
    groups_recreated: int = 0
    reconnects: int = 0

    @property
    def loss_seen(self) -> bool:
        """Entries were lost, or may have been (a group had to be re-created)."""
        return self.lost > 0 or self.groups_recreated > 0


class StreamConsumer:
    def __init__(self, client: redis.Redis, streams: list[str], group: str, consumer: str,
                 dead_letter_stream: str, *, batch: int = 100, block_ms: int = 1000,
                 claim_idle_ms: int = 60_000, start_id: str = "0",
                 dedupe_window: int = 100_000,
                 reconnect: ReconnectConfig | None = None) -> None:
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
        self.reconnect = reconnect or ReconnectConfig(initial_delay_s=0.5, max_delay_s=10.0)
        self.ready = False  # groups set up at least once: later refusals are mid-run
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._dedupe_window = dedupe_window
        self._own_pending_done = False
        self._last_read: dict[str, str] = {}
        self._failures = 0
        self._down_since: float | None = None
        self._count: Counter[str] = Counter()

    def ensure_groups(self) -> list[str]:
        """Create the group (and the stream) where missing; returns the streams where it was
        created. Redis errors propagate for the caller to classify."""
        created = []
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, self.group, id=self.start_id, mkstream=True)
            except redis.ResponseError as err:
                if str(err).startswith("BUSYGROUP"):
                    continue
                raise
            created.append(stream)
            log.info("created consumer group %s on %s from %s (it did not exist: new, or "
                     "lost with its stream)", self.group, stream, self.start_id)
        self.ready = True
        return created

    # -- reading ---------------------------------------------------------------------------
    def _flatten(self, reply: list | dict | None) -> list[Entry]:
        entries: list[Entry] = []
        if not reply:
            return entries
        items = reply.items() if isinstance(reply, dict) else reply
        for stream, messages in items:
            for entry_id, fields in (messages[0] if isinstance(reply, dict) else messages):
                entries.append((_text(stream), _text(entry_id), fields))
        for stream, entry_id, _ in entries:
            self._last_read[stream] = entry_id
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
                if entry_id is None:  # Redis 6.2: a claimed entry that was trimmed; it is
                    self._own_pending_done = False  # ours now, and our pending pass acks it
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
        """Handle and acknowledge one entry; True when the handler saw a new message.
        An entry without fields was trimmed before it was handled: acknowledged, counted
        as lost (the caller logs a summary per batch)."""
        stream, entry_id, fields = entry
        delivered = False
        if not fields:  # XADD needs a field, so no real entry is empty: it was trimmed
            self._count["lost"] += 1
            log.debug("%s %s was trimmed before it was acknowledged: lost", stream, entry_id)
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

    @staticmethod
    def _log_trimmed(entries: list[Entry]) -> None:
        trimmed: dict[str, list[str]] = {}
        for stream, entry_id, fields in entries:
            if not fields:
                trimmed.setdefault(stream, []).append(entry_id)
        for stream, ids in trimmed.items():
            log.warning("%d pending entries of %s were trimmed before they were "
                        "acknowledged: lost (ids %s .. %s); acknowledged so they are not "
                        "read again", len(ids), stream, ids[0], ids[-1])

    # -- failures --------------------------------------------------------------------------
    def _recreate_groups(self) -> None:
        """NOGROUP: re-create the group from 0 where it vanished; say what may be missing."""
        for stream in self.streams:
            try:
                self.client.xgroup_create(stream, self.group, id=RECREATE_FROM_ID,
                                          mkstream=True)
            except redis.ResponseError as err:
                if str(err).startswith("BUSYGROUP"):
                    continue
                raise
            self._count["groups_recreated"] += 1
            oldest = self._oldest_id(stream)
            last = self._last_read.get(stream)
            log.error("consumer group %s on %s had vanished (the stream was evicted or "
                      "deleted, or redis restarted without its data): re-created it from %s; "
                      "entries added after %s and before %s may be lost, with any this "
                      "consumer had read but not yet acknowledged", self.group, stream,
                      RECREATE_FROM_ID,
                      f"{last} (the last this consumer read)" if last
                      else "the group's last delivered entry (unknown to this consumer)",
                      f"{oldest} (the oldest the stream holds now)" if oldest
                      else "the next entry written (the stream is empty now)")
        self._own_pending_done = False

    def _oldest_id(self, stream: str) -> str | None:
        try:
            info = self.client.xinfo_stream(stream)
        except redis.ResponseError:
            return None
        first = info.get("first-entry")
        return _text(first[0]) if first else None

    def _backoff_s(self) -> float:
        cfg = self.reconnect
        delay = min(cfg.initial_delay_s * cfg.multiplier ** max(self._failures - 1, 0),
                    cfg.max_delay_s)
        return delay * (1.0 + cfg.jitter_fraction * (2 * random.random() - 1))

    def _on_error(self, err: Exception, stop: threading.Event, wait_limit_s: float) -> None:
        """NOGROUP: re-create; transient: wait out a backoff (at most ``wait_limit_s``);
        permanent: raise RedisRefusedError."""
        if is_nogroup(err):
            try:
                self._recreate_groups()
                return
            except redis.RedisError as again:  # e.g. OOM: wait, then NOGROUP again
                err = again
        fault = classify_redis_error(err)
        if fault.permanent:
            raise RedisRefusedError(f"consumer {self.consumer} of group {self.group}: "
                                    f"{explain_refusal(fault, client_username(self.client))}"
                                    ) from err
        self._failures += 1
        self._own_pending_done = False  # unacknowledged entries come back first
        delay = self._backoff_s()
        if self._down_since is None:
            self._down_since = time.monotonic()
            log.warning("redis unavailable (%s); consumer %s reconnects in %.1f s, backing "
                        "off up to %.0f s", fault.cause, self.consumer, delay,
                        self.reconnect.max_delay_s)
        else:
            log.debug("redis still unavailable (%s); retry in %.1f s", fault.cause, delay)
        stop.wait(max(min(delay, wait_limit_s), 0.0))

    def _on_success(self) -> None:
        if self._down_since is not None:
            self._count["reconnects"] += 1
            log.info("redis reachable again after %d attempts (%.1f s)", self._failures,
                     time.monotonic() - self._down_since)
        self._down_since = None
        self._failures = 0

    # -- loop ------------------------------------------------------------------------------
    def run(self, handler: Handler, *, max_messages: int | None = None,
            idle_exit_s: float | None = None, stop: threading.Event | None = None) -> None:
        """Loop until ``max_messages`` were handled, nothing arrived for ``idle_exit_s``, or
        ``stop`` is set (the entry in hand is finished and acknowledged first).

        Raises RedisRefusedError on a permanent refusal, RedisUnavailableError when
        ``idle_exit_s`` passes while Redis is unreachable."""
        stop = stop or threading.Event()
        last_activity = time.monotonic()
        while not stop.is_set():
            idle_s = time.monotonic() - last_activity
            if idle_exit_s is not None and idle_s >= idle_exit_s:
                if self._down_since is not None:
                    raise RedisUnavailableError(
                        f"redis unavailable for {time.monotonic() - self._down_since:.1f} s "
                        f"(--idle-exit-s {idle_exit_s:g}); consumer {self.consumer} gives up")
                return
            try:
                if not self.ready:
                    self.ensure_groups()
                entries = self.next_batch()
                self._on_success()
                if entries:
                    last_activity = time.monotonic()
                    if self._handle_batch(entries, handler, stop, max_messages):
                        return
            except redis.RedisError as err:  # redis-py wraps socket errors; a failing
                # handler (a closed stdout) is not an outage and propagates
                limit = float("inf") if idle_exit_s is None else idle_exit_s - idle_s
                self._on_error(err, stop, limit)

    def _handle_batch(self, entries: list[Entry], handler: Handler, stop: threading.Event,
                      max_messages: int | None) -> bool:
        """Handle entries in order; True when the run should end."""
        done: list[Entry] = []
        try:
            for entry in entries:
                if stop.is_set():
                    return True  # the rest stay pending for us (next run) or for a reclaim
                self.handle(entry, handler)
                done.append(entry)
                if max_messages is not None and self._count["handled"] >= max_messages:
                    return True
            return False
        finally:
            self._log_trimmed(done)

    def stats(self) -> ConsumerStats:
        c = self._count
        return ConsumerStats(handled=c["handled"], duplicates=c["duplicates"],
                             dead_lettered=c["dead"], reclaimed=c["reclaimed"],
                             acked=c["acked"], lost=c["lost"],
                             groups_recreated=c["groups_recreated"],
                             reconnects=c["reconnects"])
