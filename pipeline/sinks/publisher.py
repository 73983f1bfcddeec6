"""Publish face-track events and alerts to Redis Streams, with a local spool for outages.

Entries are buffered and written in pipelined batches (``publish_batch_size`` entries, or
whatever is buffered after ``publish_max_wait_ms``), each ``XADD ... NOMKSTREAM MAXLEN ~``.
Age-based retention rides on the same command: once per ``trim_interval_s`` per stream, one
XADD carries ``MINID ~ now - max_age`` instead of the length cap, so the pipeline's ACL user
needs no XTRIM (see deploy/redis/README.md).

Start-up (``start()``) checks the server before anything is queued: credentials, TLS and
the URL scheme, that the ACL lets us XADD to our own streams (a probe that writes nothing),
and whether ``maxmemory-policy`` may evict them. A refusal that retrying cannot fix raises
:class:`~pipeline.errors.RedisRefusedError`; an unreachable server does not (entries are
spooled until it is back).

Errors are classified by :func:`~pipeline.sinks.faults.classify_redis_error`. Transient ones
(connection refused or reset, timeouts, LOADING, BUSY, OOM, READONLY...) send the batch to
the on-disk spool and Redis is retried after a backoff; while the spool holds anything, new
entries go behind it so order is kept. Entries Redis refuses for good (NOPERM, WRONGTYPE,
syntax) are rejected: counted, logged, never spooled. A connection that is refused for good
mid-run (credentials rotated, certificate replaced) keeps its entries in the spool and is
logged as an error; the next start fails its check until the config is fixed.

Counts are truthful: "published" is what Redis acknowledged. Entries lost after Redis
acknowledged them (a stream evicted or lost in a restart) are detected by
:class:`~pipeline.sinks.loss.LossTracker`, counted, logged and reported to ``on_loss``.
Delivery is at-least-once: a connection lost after Redis applied part of a batch means some
entries are written twice; consumers drop duplicates by ``msg_id``.

The stage owns no thread. The runner calls ``publish_event`` / ``publish_alert`` (or
``process``) from its publish thread and ``poll()`` when its queue is idle, so a partial batch
and the spool are flushed even when no new events arrive. A call blocks for one pipelined
round trip at most, or for one connect timeout per backoff interval while Redis is down.
"""

from __future__ import annotations

import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import redis
from redis import exceptions as rx
from redis.connection import AbstractConnection

from pipeline.config import RedisConfig, SpoolConfig
from pipeline.errors import RedisRefusedError, SinkError
from pipeline.events import EvidenceV1, alert_message, face_track_fields, to_fields
from pipeline.origin import origin_fields
from pipeline.records import FaceEvent
from pipeline.rules.alert import Alert
from pipeline.secrets import mask_secrets
from pipeline.sinks.client import create_redis_client
from pipeline.sinks.faults import RedisFault, classify_redis_error, explain_refusal
from pipeline.sinks.loss import LossTracker, StreamLoss
from pipeline.sinks.probe import (
    EvictionPolicy,
    check_write_access,
    client_username,
    diagnose_scheme,
    read_eviction_policy,
    read_run_id,
    stream_lengths,
)
from pipeline.sinks.resp import borrowed_connection, execute_packed, pack_command, pack_xadd
from pipeline.sinks.spool import DiskSpool, SpoolEntry
from pipeline.sinks.streams import alerts_stream, events_stream, evidence_stream
from pipeline.smoothing import SmoothedEmotion

log = logging.getLogger(__name__)

_IO_ERRORS = (redis.RedisError, OSError)


@dataclass(frozen=True)
class PublisherStats:
    """Counts since start(). ``published_*`` and ``rejected_*`` are this run's entries;
    entries a previous run left in the spool are counted apart (``inherited_*``)."""

    queued_events: int
    queued_alerts: int
    published_events: int
    published_alerts: int
    rejected_events: int
    rejected_alerts: int
    spooled: int
    flushed_from_spool: int
    spool_depth: int
    dropped_events: int
    dropped_alerts: int
    write_failures: int
    trims: int
    redis_up: bool
    entries_lost: int = 0
    streams_lost: int = 0
    server_restarts: int = 0
    inherited_delivered: int = 0
    inherited_rejected: int = 0
    queued_evidence: int = 0
    published_evidence: int = 0

    @property
    def events_not_delivered(self) -> int:
        """This run's events Redis has not acknowledged (spooled, dropped or rejected)."""
        return self.queued_events - self.published_events

    @property
    def alerts_not_delivered(self) -> int:
        return self.queued_alerts - self.published_alerts


@dataclass
class _SendResult:
    acked: int = 0
    failed: list[SpoolEntry] = field(default_factory=list)  # transient: back to the spool
    error: BaseException | None = None  # the first transient error


PublishItem = tuple[FaceEvent, SmoothedEmotion] | Alert


class EventPublisher:
    name = "publish"

    def __init__(self, cfg: RedisConfig, spool_cfg: SpoolConfig, station_id: str, *,
                 url: str | None = None, client: redis.Redis | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 camera_ids: Sequence[str] = (),
                 on_loss: Callable[[StreamLoss], None] | None = None) -> None:
        """``camera_ids``: cameras known at start-up, whose event streams the start-up check
        covers (with none, a representative events stream name is checked). ``on_loss`` is
        called for each loss of acknowledged entries. A ``client`` given here has no connect
        hook: restarts are then noticed from vanished streams only."""
        self.cfg = cfg
        self.station_id = station_id
        self._url = url
        self._client = client
        self._owns_client = client is None
        self._clock = clock
        self._camera_ids = tuple(camera_ids)
        self._on_loss = on_loss
        self.spool = DiskSpool(spool_cfg)
        self._spool_batch = spool_cfg.flush_batch_size
        self._drain_timeout_s = spool_cfg.drain_timeout_s
        self._pending: list[SpoolEntry] = []
        self._pending_since = 0.0
        self._redis_up = True
        self._fault: RedisFault | None = None
        self._failures = 0
        self._retry_at = 0.0
        self._server_checked = False
        self._policy_checked = False
        self._info_allowed = True
        self._lengths_allowed = True
        self._tracker = LossTracker()
        self._streams: dict[str, float | None] = {}  # stream -> max age in s
        self._next_age_trim: dict[str, float] = {}  # stream -> clock time
        self._event_streams: dict[str, str] = {}  # camera -> stream
        self._count: Counter[str] = Counter()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Open the spool, connect and check the server; then send what a previous run left.

        Raises RedisRefusedError when Redis refuses us for good (credentials, NOAUTH, TLS
        certificate, wrong scheme, NOPERM on our streams, an evicting maxmemory-policy with
        ``redis.refuse_evicting_policy``); SinkError when the spool cannot be opened. An
        unreachable or busy server is not an error here: entries are spooled until it is
        back, and the checks run on the first connection that works."""
        self.spool.open()
        if self._client is None:
            self._client = create_redis_client(self.cfg, url=self._url,
                                               on_connect=self._on_connect)
        try:
            self._check_server(startup=True)
        except RedisRefusedError:
            self._close()
            raise
        except _IO_ERRORS as err:
            fault = classify_redis_error(err)
            reason = (explain_refusal(fault, client_username(self._connected()))
                      if fault.permanent else self._scheme_problem(fault))
            if reason is not None:
                self._close()
                raise RedisRefusedError(f"redis at {mask_secrets(self._target())} refused "
                                        f"the pipeline: {reason}") from err
            self._mark_down(err)
        if len(self.spool) and self._redis_up:
            self.drain_spool()

    def stop(self, drain_timeout_s: float | None = None) -> None:
        """Flush what is buffered; keep trying to empty the spool for up to
        ``drain_timeout_s`` (wall time; default ``spool.drain_timeout_s``) while Redis is
        away for a transient reason. What cannot be delivered stays in the spool for the
        next run. Safe to call twice."""
        if self._client is None:
            return
        self.flush()
        if drain_timeout_s is None:
            drain_timeout_s = self._drain_timeout_s
        deadline = time.monotonic() + drain_timeout_s
        while len(self.spool):
            self._retry_at = 0.0
            self.drain_spool()
            remaining = deadline - time.monotonic()
            if not len(self.spool) or remaining <= 0 or self._redis_up:
                break
            if self._fault is not None and self._fault.permanent:
                break
            time.sleep(min(self._backoff_s(), remaining))
        self._log_delivery()
        self._close()

    def _close(self) -> None:
        self.spool.close()
        if self._owns_client and self._client is not None:
            self._client.close()
        self._client = None

    def _target(self) -> str:
        return self._url or self.cfg.url

    def _scheme_problem(self, fault: RedisFault) -> str | None:
        """At start-up, a reset or a handshake timeout may be a wrong scheme, not an outage."""
        if fault.code not in ("CONNECTION", "TIMEOUT") or "refused" in fault.cause.lower():
            return None
        return diagnose_scheme(self._target(), self.cfg.connect_timeout_s)

    # -- server checks ---------------------------------------------------------------------
    def probe_streams(self) -> list[str]:
        """The streams the start-up check proves we may write."""
        prefix = self.cfg.stream_prefix
        cameras = self._camera_ids or ("probe",)
        return [alerts_stream(prefix, self.station_id),
                *(events_stream(prefix, self.station_id, c) for c in cameras)]

    def _check_server(self, *, startup: bool) -> None:
        """Write access, eviction policy and a baseline of stream lengths. At start-up a
        refusal raises RedisRefusedError; later (the first connection after an outage at
        start) it is logged, and writes show the rest."""
        streams = self.probe_streams()
        with borrowed_connection(self._connected()) as connection:
            if not self._policy_checked:  # INFO works even when writes get OOM
                self._check_policy(read_eviction_policy(connection), startup=startup)
                self._policy_checked = True
            if startup:
                check_write_access(connection, streams, username=client_username(
                    self._connected()), pattern=f"{self.cfg.stream_prefix}:{self.station_id}:*")
        known = [s for s in streams if not s.endswith(":events:probe")]
        if self._lengths_allowed:
            self._baseline(known)
        self._server_checked = True

    def _check_policy(self, policy: EvictionPolicy | None, *, startup: bool) -> None:
        if policy is None:
            log.warning("cannot read redis maxmemory-policy (the ACL refuses INFO and CONFIG):"
                        " checking that it cannot evict the streams is a deployment check "
                        "(deploy/redis/README.md)")
            return
        if not policy.evicts_streams:
            log.info("redis maxmemory-policy %s: the streams are never evicted",
                     policy.policy)
            return
        limit = ("no maxmemory set yet" if not policy.maxmemory_bytes
                 else f"maxmemory {policy.maxmemory_bytes} bytes")
        message = (f"redis maxmemory-policy is {policy.policy} ({limit}): when memory is full "
                   f"Redis evicts keys, the event and alert streams and their consumer "
                   f"groups included; set maxmemory-policy noeviction "
                   f"(deploy/redis/redis.conf)")
        if startup and self.cfg.refuse_evicting_policy:
            raise RedisRefusedError(f"{message}; refusing to start because "
                                    f"redis.refuse_evicting_policy is true")
        log.warning("%s. Losses are detected and counted, not prevented", message)

    def _on_connect(self, connection: AbstractConnection) -> None:
        """redis-py connect hook: set the connection up, then learn the server's run id and,
        when it changed since the last connection, count what the restart lost."""
        connection.on_connect()
        if not self._info_allowed:
            return
        try:
            run_id = read_run_id(connection)
        except rx.ResponseError as err:  # NOPERM, or a server without INFO server
            if classify_redis_error(err).transient:
                raise  # BUSY...: this connect fails, a later one asks again
            self._info_allowed = False
            log.info("redis refuses INFO (%s): restarts are noticed only from streams that "
                     "vanish (deploy/redis/README.md)", classify_redis_error(err).cause)
            return
        if run_id is None or run_id == self._tracker.run_id:
            return
        lengths = None
        if self._tracker.run_id is not None:
            self._count["restarts"] += 1
            log.warning("redis server restarted or failed over (run id %s... -> %s...); "
                        "checking what it still holds", self._tracker.run_id[:8], run_id[:8])
            if self._lengths_allowed:
                try:
                    lengths = stream_lengths(connection, self._tracker.streams())
                except rx.ResponseError as err:
                    if classify_redis_error(err).transient:
                        raise
                    self._lengths_refused()
        for loss in self._tracker.server_seen(run_id, lengths):
            self._report_loss(loss)

    def _lengths_refused(self) -> None:
        self._lengths_allowed = False
        log.info("the ACL refuses EXISTS/XLEN: losses are counted from this run's "
                 "acknowledged writes (deploy/redis/README.md)")

    def _report_loss(self, loss: StreamLoss) -> None:
        self._count["lost"] += loss.entries
        self._count["streams_lost"] += int(loss.vanished)
        log.error("%s; %d entries lost so far in this run", loss.describe(),
                  self._count["lost"])
        if self._on_loss is not None:
            self._on_loss(loss)

    # -- input -----------------------------------------------------------------------------
    def process(self, item: PublishItem) -> str:
        if isinstance(item, Alert):
            return self.publish_alert(item)
        event, smoothed = item
        return self.publish_event(event, smoothed)

    def publish_event(self, event: FaceEvent, smoothed: SmoothedEmotion) -> str:
        """Queue one face-track event; returns its msg_id."""
        fields = face_track_fields(event, smoothed, self.station_id)
        fields.update(origin_fields(event.run, (event.track_id,)))
        stream = self._event_streams.get(event.camera_id)
        if stream is None:
            stream = events_stream(self.cfg.stream_prefix, self.station_id, event.camera_id)
            self._event_streams[event.camera_id] = stream
            self._streams[stream] = self.cfg.events_max_age_s
        self._count["queued_event"] += 1
        self._add(SpoolEntry("event", stream, fields, self.cfg.events_maxlen))
        return fields["msg_id"]

    def publish_alert(self, alert: Alert) -> str:
        """Queue one alert; alerts are sent at once (with anything buffered before them)."""
        message = alert_message(alert)
        stream = alerts_stream(self.cfg.stream_prefix, self.station_id)
        self._streams.setdefault(stream, self.cfg.alerts_max_age_s)
        self._count["queued_alert"] += 1
        fields = to_fields(message)
        fields.update(origin_fields(alert.run, [t.track_id for t in alert.tracks], alert=True))
        self._add(SpoolEntry("alert", stream, fields, self.cfg.alerts_maxlen))
        self.flush()
        return message.msg_id

    def publish_evidence(self, message: EvidenceV1) -> str:
        """Queue an alert's evidence references (``{prefix}:{station}:evidence``, capped and
        aged like the alerts stream); sent at once, like alerts."""
        stream = evidence_stream(self.cfg.stream_prefix, self.station_id)
        self._streams.setdefault(stream, self.cfg.alerts_max_age_s)
        self._count["queued_evidence"] += 1
        self._add(SpoolEntry("evidence", stream, to_fields(message), self.cfg.alerts_maxlen))
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
        """Call when idle: sends a partial batch that has waited long enough and retries
        the spool after its backoff."""
        now = self._clock()
        if self._pending and (now - self._pending_since) * 1000 >= self.cfg.publish_max_wait_ms:
            self.flush()
        if len(self.spool) and now >= self._retry_at:
            self.drain_spool(deadline=now + 0.5)

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
        result = self._send(batch)
        if result.failed:
            self._to_spool(result.failed)

    def _to_spool(self, entries: list[SpoolEntry]) -> None:
        self.spool.append(entries)
        self._count["spooled"] += len(entries)

    def trim(self) -> None:
        """Make the next write of each stream with an age limit carry ``MINID ~``."""
        for stream in self._streams:
            self._next_age_trim[stream] = 0.0

    def _minid_for(self, stream: str, now: float, now_ms: int) -> str | None:
        max_age_s = self._streams.get(stream)
        if max_age_s is None:
            return None
        # the first age trim of a stream is one interval after its first write
        if now < self._next_age_trim.setdefault(stream, now + self.cfg.trim_interval_s):
            return None
        self._next_age_trim[stream] = now + self.cfg.trim_interval_s
        return f"{now_ms - int(max_age_s * 1000)}-0"

    def _send(self, batch: list[SpoolEntry], *, create: bool = False) -> _SendResult:
        """XADD a batch in one pipeline (then XLEN of each stream written). Returns what was
        acknowledged and the entries that failed for a transient reason; rejected entries
        are counted and logged here. ``create``: streams may be created (no NOMKSTREAM)."""
        now, now_ms = self._clock(), int(time.time() * 1000)
        minids = [self._minid_for(e.stream, now, now_ms) for e in batch]
        commands = [pack_xadd(e.stream, e.fields, e.maxlen, nomkstream=not create, minid=m)
                    for e, m in zip(batch, minids, strict=True)]
        streams = list(dict.fromkeys(e.stream for e in batch))
        if self._lengths_allowed:
            commands += [pack_command(b"XLEN", s.encode()) for s in streams]
        result = _SendResult()
        try:
            unknown = [s for s in streams if not self._tracker.known(s)]
            if unknown and self._lengths_allowed:
                self._baseline(unknown)
            replies = execute_packed(self._connected(), commands)
        except _IO_ERRORS as err:
            self._mark_down(err)
            result.failed = list(batch)
            return result
        missing: list[SpoolEntry] = []
        rejected: dict[tuple[str, str, str], int] = Counter()
        for entry, minid, reply in zip(batch, minids, replies, strict=False):
            if isinstance(reply, Exception):
                fault = classify_redis_error(reply)
                if fault.transient:
                    result.failed.append(entry)
                    result.error = result.error or reply
                else:
                    self._reject(entry)
                    rejected[(entry.kind, entry.stream, fault.cause)] += 1
            elif reply is None:
                missing.append(entry)
                loss = self._tracker.missing_on_write(entry.stream)
                if loss is not None:
                    self._report_loss(loss)
            else:
                self._acked(entry, trimmed=minid is not None)
                result.acked += 1
        trimmed = {e.stream for e, m in zip(batch, minids, strict=True) if m is not None}
        caps = {e.stream: e.maxlen for e in batch}
        self._note_lengths(streams, replies[len(batch):], caps, trimmed)
        self._log_rejected(rejected)
        if missing:
            if not create:
                log.info("creating stream %s", ", ".join(sorted({e.stream for e in missing})))
                retried = self._send(missing, create=True)
                result.acked += retried.acked
                result.failed += retried.failed
                result.error = result.error or retried.error
            else:  # cannot happen without NOMKSTREAM; keep the entries rather than guess
                result.failed += missing
        if result.error is not None:
            self._mark_down(result.error)
        elif not result.failed:
            self._mark_up()
        return result

    def _acked(self, entry: SpoolEntry, *, trimmed: bool) -> None:
        if entry.inherited(self.spool):
            self._count["inherited_delivered"] += 1
        else:
            self._count[f"published_{entry.kind}"] += 1
        self._count["trims"] += int(trimmed)
        self._tracker.acked(entry.stream, entry.maxlen)

    def _reject(self, entry: SpoolEntry) -> None:
        if entry.inherited(self.spool):
            self._count["inherited_rejected"] += 1
        else:
            self._count[f"rejected_{entry.kind}"] += 1

    def _note_lengths(self, streams: list[str], replies: list[object], caps: dict[str, int],
                      trimmed: set[str]) -> None:
        for stream, reply in zip(streams, replies, strict=False):
            if isinstance(reply, int):
                loss = self._tracker.length(stream, reply, cap=caps[stream],
                                            trimmed=stream in trimmed)
                if loss is not None:
                    self._report_loss(loss)
            elif isinstance(reply, rx.NoPermissionError) and self._lengths_allowed:
                self._lengths_refused()

    def _baseline(self, streams: list[str]) -> None:
        """Existence and length of streams seen for the first time (before we write)."""
        with borrowed_connection(self._connected()) as connection:
            try:
                self._tracker.baseline(stream_lengths(connection, streams))
            except rx.ResponseError as err:
                if classify_redis_error(err).transient:
                    raise
                self._lengths_refused()

    @staticmethod
    def _log_rejected(rejected: dict[tuple[str, str, str], int]) -> None:
        for (kind, stream, cause), n in rejected.items():
            log.error("redis rejected %d %s entries for %s: %s; they are not delivered and "
                      "not spooled (retrying cannot help)", n, kind, stream, cause)

    def drain_spool(self, deadline: float | None = None) -> int:
        """Send spooled entries oldest first until empty, a failure, or ``deadline``.
        Returns how many Redis acknowledged; rejected entries leave the spool too."""
        sent = 0
        while len(self.spool):
            batch = self.spool.peek(self._spool_batch)
            result = self._send(batch)
            failed_ids = {e.row_id for e in result.failed}
            self.spool.remove([e for e in batch if e.row_id not in failed_ids])
            sent += result.acked
            self._count["flushed"] += result.acked
            if result.failed or (deadline is not None and self._clock() >= deadline):
                break
        if sent:
            log.info("flushed %d spooled entries to redis, %d left", sent, len(self.spool))
        return sent

    def _connected(self) -> redis.Redis:
        if self._client is None:
            raise SinkError("EventPublisher: start() was not called (or stop() was)")
        return self._client

    # -- health ----------------------------------------------------------------------------
    def _backoff_s(self) -> float:
        reconnect = self.cfg.reconnect
        delay = min(reconnect.initial_delay_s * reconnect.multiplier ** max(self._failures - 1, 0),
                    reconnect.max_delay_s)
        return delay * (1.0 + reconnect.jitter_fraction * (2 * random.random() - 1))

    def _mark_down(self, err: BaseException) -> None:
        fault = classify_redis_error(err)
        self._count["failures"] += 1
        self._failures += 1
        delay = self._backoff_s()
        self._retry_at = self._clock() + delay
        changed = self._redis_up or self._fault is None or self._fault.code != fault.code
        self._fault = fault
        self._redis_up = False
        if not changed:
            return
        if fault.permanent:
            log.error("redis refuses the pipeline (%s): spooling to %s, retrying every %.1f "
                      "s at most; fix the server or the config (the next start will refuse "
                      "to run until then)", fault.cause, self.spool.path,
                      self.cfg.reconnect.max_delay_s)
        else:
            log.warning("redis write failed (%s); spooling to %s, retrying in %.1f s",
                        fault.cause, self.spool.path, delay)

    def _mark_up(self) -> None:
        if not self._redis_up:
            log.info("redis reachable again after %d failed attempts", self._failures)
        self._redis_up = True
        self._fault = None
        self._failures = 0
        self._retry_at = 0.0
        if not self._server_checked:
            try:
                self._check_server(startup=False)
            except _IO_ERRORS as err:
                log.warning("redis server check failed: %s", classify_redis_error(err).cause)

    def _log_delivery(self) -> None:
        stats = self.stats()
        log.info("redis: %d of %d events and %d of %d alerts acknowledged",
                 stats.published_events, stats.queued_events, stats.published_alerts,
                 stats.queued_alerts)
        not_delivered = stats.events_not_delivered + stats.alerts_not_delivered
        if not_delivered:
            log.error("%d events and %d alerts were not delivered: %d in the spool, %d "
                      "dropped (spool full), %d rejected by redis",
                      stats.events_not_delivered, stats.alerts_not_delivered,
                      stats.spool_depth, stats.dropped_events + stats.dropped_alerts,
                      stats.rejected_events + stats.rejected_alerts)
        if stats.spool_depth:
            log.warning("%d entries stay in the spool %s; the next start with this spool.dir "
                        "sends them first, once its redis check passes", stats.spool_depth,
                        self.spool.path)
        if stats.inherited_delivered or stats.inherited_rejected:
            log.info("entries left by a previous run: %d delivered, %d rejected",
                     stats.inherited_delivered, stats.inherited_rejected)
        if stats.entries_lost or stats.streams_lost:
            log.error("redis lost %d entries it had acknowledged (streams vanished: %d, "
                      "server restarts seen: %d)", stats.entries_lost, stats.streams_lost,
                      stats.server_restarts)

    def stats(self) -> PublisherStats:
        spool = self.spool.stats()
        c = self._count
        return PublisherStats(
            queued_events=c["queued_event"], queued_alerts=c["queued_alert"],
            published_events=c["published_event"], published_alerts=c["published_alert"],
            rejected_events=c["rejected_event"], rejected_alerts=c["rejected_alert"],
            spooled=c["spooled"], flushed_from_spool=c["flushed"], spool_depth=spool.depth,
            dropped_events=spool.dropped_events, dropped_alerts=spool.dropped_alerts,
            write_failures=c["failures"], trims=c["trims"], redis_up=self._redis_up,
            entries_lost=c["lost"], streams_lost=c["streams_lost"],
            server_restarts=c["restarts"], inherited_delivered=c["inherited_delivered"],
            inherited_rejected=c["inherited_rejected"],
            queued_evidence=c["queued_evidence"], published_evidence=c["published_evidence"])
