"""Publish face-track events and alerts to Redis Streams, with a local spool for outages.

Entries are buffered and written in pipelined batches (``publish_batch_size`` entries, or
whatever is buffered after ``publish_max_wait_ms``), each ``XADD ... MAXLEN ~``. Age-based
retention runs as ``XTRIM ... MINID ~`` every ``trim_interval_s``.

No loss: when a write fails (connection refused, timeout, READONLY, OOM...), the batch goes to
the on-disk spool and Redis is retried after a backoff; while the spool holds anything, new
entries go behind it so order is kept, and the spool is flushed oldest first when Redis is
back. A connection lost after Redis applied part of a batch means some entries are written
twice: delivery is at-least-once and consumers drop duplicates by ``msg_id``.

The stage owns no thread. The runner calls ``publish_event`` / ``publish_alert`` (or
``process``) from its publish thread and ``poll()`` when its queue is idle, so a partial
batch and the spool are flushed and old entries trimmed even when no new events arrive. A
call blocks for one pipelined round trip at most, or for one connect timeout per backoff
interval while Redis is down.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from pipeline.config import RedisConfig, SpoolConfig
from pipeline.errors import SinkError
from pipeline.events import alert_message, face_track_fields, to_fields
from pipeline.records import FaceEvent
from pipeline.rules.alert import Alert
from pipeline.secrets import mask_secrets
from pipeline.sinks.client import create_redis_client
from pipeline.sinks.resp import execute_packed, pack_xadd
from pipeline.sinks.spool import DiskSpool, SpoolEntry
from pipeline.sinks.streams import alerts_stream, events_stream
from pipeline.smoothing import SmoothedEmotion
from pipeline.stage import Stage

log = logging.getLogger(__name__)

_WRITE_ERRORS = (redis.ConnectionError, redis.TimeoutError, OSError)
# Rejections that go away by themselves (failover, memory freed, loading after restart).
_TRANSIENT_REPLIES = ("READONLY", "OOM", "LOADING", "MASTERDOWN", "BUSY", "TRYAGAIN")


@dataclass(frozen=True)
class PublisherStats:
    published_events: int
    published_alerts: int
    spooled: int
    flushed_from_spool: int
    spool_depth: int
    dropped_events: int
    dropped_alerts: int
    write_failures: int
    trims: int
    redis_up: bool


def _is_transient(err: redis.ResponseError) -> bool:
    return str(err).split(" ", 1)[0].upper() in _TRANSIENT_REPLIES


PublishItem = tuple[FaceEvent, SmoothedEmotion] | Alert


class EventPublisher(Stage[PublishItem, str]):
    name = "publish"

    def __init__(self, cfg: RedisConfig, spool_cfg: SpoolConfig, station_id: str, *,
                 url: str | None = None, client: redis.Redis | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.station_id = station_id
        self._url = url
        self._client = client
        self._owns_client = client is None
        self._clock = clock
        self.spool = DiskSpool(spool_cfg)
        self._spool_batch = spool_cfg.flush_batch_size
        self._pending: list[SpoolEntry] = []
        self._pending_since = 0.0
        self._redis_up = True
        self._failures = 0
        self._retry_at = 0.0
        self._next_trim = 0.0
        self._streams: dict[str, float | None] = {}  # stream -> max age in s
        self._event_streams: dict[str, str] = {}  # camera -> stream
        self._count = {"event": 0, "alert": 0, "spooled": 0, "flushed": 0, "failures": 0,
                       "trims": 0}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Open the spool and connect. Bad credentials or ACL fail here; unreachable Redis
        does not (events are spooled until it is back)."""
        self.spool.open()
        if self._client is None:
            self._client = create_redis_client(self.cfg, url=self._url)
        try:
            self._client.ping()
        except redis.AuthenticationError as err:
            raise SinkError(f"redis refused our credentials: {mask_secrets(str(err))}") from err
        except redis.ResponseError as err:
            if not _is_transient(err):
                raise SinkError(f"redis refused PING: {mask_secrets(str(err))}") from err
            self._mark_down(err)
        except _WRITE_ERRORS as err:
            self._mark_down(err)
        self._next_trim = self._clock() + self.cfg.trim_interval_s
        if len(self.spool) and self._redis_up:
            self.drain_spool()

    def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Flush what is buffered; try to empty the spool for up to ``drain_timeout_s``.
        What cannot be delivered stays in the spool for the next run. Safe to call twice."""
        if self._client is None:
            return
        self.flush()
        if len(self.spool):
            self._retry_at = 0.0
            self.drain_spool(deadline=self._clock() + drain_timeout_s)
        if len(self.spool):
            log.warning("stopping with %d entries in the spool %s; they are sent next run",
                        len(self.spool), self.spool.path)
        self.spool.close()
        if self._owns_client:
            self._client.close()
        self._client = None

    # -- input -----------------------------------------------------------------------------
    def process(self, item: PublishItem) -> str:
        if isinstance(item, Alert):
            return self.publish_alert(item)
        event, smoothed = item
        return self.publish_event(event, smoothed)

    def publish_event(self, event: FaceEvent, smoothed: SmoothedEmotion) -> str:
        """Queue one face-track event; returns its msg_id."""
        fields = face_track_fields(event, smoothed, self.station_id)
        stream = self._event_streams.get(event.camera_id)
        if stream is None:
            stream = events_stream(self.cfg.stream_prefix, self.station_id, event.camera_id)
            self._event_streams[event.camera_id] = stream
            self._streams[stream] = self.cfg.events_max_age_s
        self._add(SpoolEntry("event", stream, fields, self.cfg.events_maxlen))
        return fields["msg_id"]

    def publish_alert(self, alert: Alert) -> str:
        """Queue one alert; alerts are sent at once (with anything buffered before them)."""
        message = alert_message(alert)
        stream = alerts_stream(self.cfg.stream_prefix, self.station_id)
        self._streams.setdefault(stream, self.cfg.alerts_max_age_s)
        self._add(SpoolEntry("alert", stream, to_fields(message), self.cfg.alerts_maxlen))
        self.flush()
        return message.msg_id

    def _add(self, entry: SpoolEntry) -> None:
        if not self._pending:
            self._pending_since = self._clock()
        self._pending.append(entry)
        if len(self._pending) >= self.cfg.publish_batch_size:
            self.flush()

    # -- output ----------------------------------------------------------------------------
    def poll(self) -> None:
        """Call when idle: sends a partial batch that has waited long enough, retries the
        spool after its backoff and trims old entries when due."""
        now = self._clock()
        if self._pending and (now - self._pending_since) * 1000 >= self.cfg.publish_max_wait_ms:
            self.flush()
        if len(self.spool) and now >= self._retry_at:
            self.drain_spool(deadline=now + 0.5)
        if now >= self._next_trim and self._redis_up and not len(self.spool):
            self.trim()

    def flush(self) -> None:
        """Send everything buffered now (or spool it if Redis is down or the spool is busy)."""
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        if len(self.spool) or not self._redis_up:
            self._to_spool(batch)
            if self._clock() >= self._retry_at:
                self.drain_spool(deadline=self._clock() + 0.5)
            return
        failed = self._send(batch)
        if failed:
            self._to_spool(failed)

    def _to_spool(self, entries: list[SpoolEntry]) -> None:
        self.spool.append(entries)
        self._count["spooled"] += len(entries)

    def _send(self, batch: list[SpoolEntry]) -> list[SpoolEntry]:
        """XADD a batch in one pipeline; returns the entries that were not written."""
        commands = [pack_xadd(e.stream, e.fields, e.maxlen) for e in batch]
        try:
            results = execute_packed(self._connected(), commands)
        except _WRITE_ERRORS as err:
            self._mark_down(err)
            return batch
        failed = [e for e, r in zip(batch, results, strict=True) if isinstance(r, Exception)]
        for entry, result in zip(batch, results, strict=True):
            if not isinstance(result, Exception):
                self._count[entry.kind] += 1
        if failed:
            error = next(r for r in results if isinstance(r, Exception))
            if isinstance(error, redis.ResponseError) and not _is_transient(error):
                # NOPERM, WRONGTYPE...: retrying will not help, but losing data silently is
                # worse; keep it spooled, and say so loudly.
                log.error("redis rejected %d entries: %s", len(failed),
                          mask_secrets(str(error)))
            self._mark_down(error)
        else:
            self._mark_up()
        return failed

    def drain_spool(self, deadline: float | None = None) -> int:
        """Send spooled entries oldest first until empty, a failure, or ``deadline``."""
        sent = 0
        while len(self.spool):
            batch = self.spool.peek(self._spool_batch)
            failed = self._send(batch)
            failed_ids = {e.row_id for e in failed}
            delivered = [e for e in batch if e.row_id not in failed_ids]
            self.spool.remove(delivered)
            sent += len(delivered)
            self._count["flushed"] += len(delivered)
            if failed or (deadline is not None and self._clock() >= deadline):
                break
        if sent:
            log.info("flushed %d spooled entries to redis, %d left", sent, len(self.spool))
        return sent

    def trim(self) -> None:
        """XTRIM MINID ~ each stream we write that has an age limit."""
        client = self._connected()
        self._next_trim = self._clock() + self.cfg.trim_interval_s
        now_ms = int(time.time() * 1000)
        pipe = client.pipeline(transaction=False)
        trimmed = 0
        for stream, max_age_s in self._streams.items():
            if max_age_s is not None:
                pipe.xtrim(stream, minid=f"{now_ms - int(max_age_s * 1000)}-0",
                           approximate=True)
                trimmed += 1
        if not trimmed:
            return
        try:
            pipe.execute()
        except (*_WRITE_ERRORS, redis.ResponseError) as err:
            log.warning("XTRIM by age failed: %s", mask_secrets(str(err)))
            return
        self._count["trims"] += trimmed

    def _connected(self) -> redis.Redis:
        if self._client is None:
            raise SinkError("EventPublisher: start() was not called (or stop() was)")
        return self._client

    # -- health ----------------------------------------------------------------------------
    def _mark_down(self, err: BaseException) -> None:
        self._count["failures"] += 1
        delay = min(self.cfg.reconnect.initial_delay_s
                    * self.cfg.reconnect.multiplier ** self._failures,
                    self.cfg.reconnect.max_delay_s)
        delay *= 1.0 + self.cfg.reconnect.jitter_fraction * (2 * random.random() - 1)
        self._failures += 1
        self._retry_at = self._clock() + delay
        if self._redis_up:
            log.warning("redis write failed (%s); spooling to %s, retrying in %.1f s",
                        mask_secrets(str(err)), self.spool.path, delay)
        self._redis_up = False

    def _mark_up(self) -> None:
        if not self._redis_up:
            log.info("redis reachable again after %d failed attempts", self._failures)
        self._redis_up = True
        self._failures = 0
        self._retry_at = 0.0

    def stats(self) -> PublisherStats:
        spool = self.spool.stats()
        return PublisherStats(
            published_events=self._count["event"], published_alerts=self._count["alert"],
            spooled=self._count["spooled"], flushed_from_spool=self._count["flushed"],
            spool_depth=spool.depth, dropped_events=spool.dropped_events,
            dropped_alerts=spool.dropped_alerts, write_failures=self._count["failures"],
            trims=self._count["trims"], redis_up=self._redis_up)
