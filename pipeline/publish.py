"""Event output: temporal smoothing and alert rules, then Redis Streams publishing.

:class:`EventOutput` is what the runner hands face events to. It starts the embedded Redis
when ``redis.embedded`` is set, owns the :class:`~pipeline.sinks.publisher.EventPublisher`
(which spools to disk while Redis is away) and the station's
:class:`~pipeline.rules.engine.AlertEngine`. One thread owns it: the replay loop, or the live
runner's output thread; per camera it must receive events and track ends in stream order
(``handle(events, ended_track_ids, camera_id)``: the events first, then the ends). The lock
only guards against misuse and the final stop.

Counts are Redis's: ``events_published`` is what Redis acknowledged, ``events_not_delivered``
what it has not (still in the spool, dropped from a full spool, or rejected), ``entries_lost``
what it acknowledged and then lost (evicted streams, a restart without data). Each loss is
counted in the run metrics as it is found (``redis_entries_lost``, ``redis_streams_lost``, per
camera, ``station`` for the alerts stream); the not-delivered totals are added when the
publisher stops (``events_not_delivered``, ``alerts_not_delivered``, camera ``all``).

For ``/status`` and the metrics, :meth:`EventOutput.state` returns an :class:`OutputState`
snapshot taken on the owning thread after each call, so readers on other threads never wait
for a Redis round trip. The frame-to-publish latency of each event is observed in the run
metrics (``cctv_event_latency_seconds``) as it is handed to the publisher.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from pipeline.config import AppConfig
from pipeline.evidence import EvidenceRecorder
from pipeline.metrics import RunMetrics
from pipeline.records import FaceEvent
from pipeline.rules.alert import Alert
from pipeline.rules.engine import AlertEngine, SharedCooldowns
from pipeline.sinks.embedded import EmbeddedRedis
from pipeline.sinks.loss import StreamLoss
from pipeline.sinks.publisher import EventPublisher, PublisherStats

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputState:
    """The output as last seen by its owning thread. ``publisher`` is None before the
    publisher started. Times are Unix wall-clock seconds: ``last_event_frame_ts_s`` is the
    decode time of the frame of each camera's last event, ``last_event_publish_ts_s`` when
    that event was handed to the publisher."""

    publisher: PublisherStats | None
    spool_depth_bytes: int
    spool_max_messages: int
    spool_max_bytes: int
    last_event_frame_ts_s: Mapping[str, float] = field(default_factory=dict)
    last_event_publish_ts_s: Mapping[str, float] = field(default_factory=dict)

    @property
    def spool_accepting(self) -> bool:
        """The spool is below both of its limits (at a limit it drops its oldest entries)."""
        depth = self.publisher.spool_depth if self.publisher is not None else 0
        return depth < self.spool_max_messages and self.spool_depth_bytes < self.spool_max_bytes

    @property
    def redis_up(self) -> bool:
        return self.publisher is not None and self.publisher.redis_up


class EventOutput:
    def __init__(self, config: AppConfig, metrics: RunMetrics,
                 class_names: Sequence[str] | None = None, *,
                 shared_cooldowns: SharedCooldowns | None = None,
                 evidence: EvidenceRecorder | None = None) -> None:
        """``shared_cooldowns``: the station-wide alert cooldowns of the cluster modes.
        ``evidence``: when set, each alert carries its planned evidence URIs and the
        evidence messages it completes are published to the evidence stream."""
        self._config = config
        self._evidence = evidence
        # called with each alert as published (e.g. the replay annotation marks it)
        self.alert_listeners: list[Callable[[Alert], None]] = []
        self._metrics = metrics
        self._lock = threading.Lock()
        self._embedded: EmbeddedRedis | None = None
        self._publisher: EventPublisher | None = None
        # Rules naming an unknown emotion or camera are refused here, at start-up.
        self._alerts = AlertEngine(config.alerts, config.smoothing, config.station.id,
                                   class_names=class_names,
                                   camera_ids=[c.id for c in config.cameras] or None,
                                   shared_cooldowns=shared_cooldowns)
        self._final: PublisherStats | None = None
        self.top_emotions: Counter[str] = Counter()
        self._state_lock = threading.Lock()
        self._last_frame_ts: dict[str, float] = {}
        self._last_publish_ts: dict[str, float] = {}
        self._state = OutputState(None, 0, config.spool.max_messages,
                                  int(config.spool.max_mb * 1024 * 1024))

    def __enter__(self) -> EventOutput:
        url = None
        if self._config.redis.embedded:
            self._embedded = EmbeddedRedis.from_config(self._config.redis)
            self._embedded.start()
            url = self._embedded.url
            log.info("embedded redis-server at %s (data in %s)", url, self._config.redis.data_dir)
        try:
            self._publisher = EventPublisher(
                self._config.redis, self._config.spool, self._config.station.id, url=url,
                camera_ids=[c.id for c in self._config.cameras], on_loss=self._count_loss)
            self._publisher.start()
        except BaseException:
            self._stop_embedded()
            raise
        self._snapshot()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._publisher is not None:
                with self._lock:
                    self._publisher.stop()
                stats = self._final = self._publisher.stats()
                self._snapshot()
                log.info("publisher: %s", stats)
                self._metrics.count("all", "events_not_delivered", stats.events_not_delivered)
                self._metrics.count("all", "alerts_not_delivered", stats.alerts_not_delivered)
        finally:
            self._stop_embedded()

    def _stop_embedded(self) -> None:
        if self._embedded is not None:
            self._embedded.stop()
            self._embedded = None

    def _count_loss(self, loss: StreamLoss) -> None:
        camera = (loss.stream.rsplit(":events:", 1)[1] if ":events:" in loss.stream
                  else "station")
        self._metrics.count(camera, "redis_entries_lost", loss.entries)
        self._metrics.count(camera, "redis_streams_lost", int(loss.vanished))

    def _stats(self) -> PublisherStats | None:
        if self._final is not None:
            return self._final
        return self._publisher.stats() if self._publisher is not None else None

    @property
    def events_published(self) -> int:
        """Events Redis acknowledged."""
        stats = self._stats()
        return stats.published_events if stats else 0

    @property
    def alerts_published(self) -> int:
        stats = self._stats()
        return stats.published_alerts if stats else 0

    @property
    def events_not_delivered(self) -> int:
        """Events of this run Redis has not acknowledged (final once the output is closed)."""
        stats = self._stats()
        return stats.events_not_delivered if stats else 0

    @property
    def alerts_not_delivered(self) -> int:
        stats = self._stats()
        return stats.alerts_not_delivered if stats else 0

    @property
    def entries_lost(self) -> int:
        """Entries Redis acknowledged and then lost (evicted, restart without data)."""
        stats = self._stats()
        return stats.entries_lost if stats else 0

    @property
    def redis_url(self) -> str | None:
        return self._embedded.url if self._embedded is not None else None

    def handle(self, events: Sequence[FaceEvent], ended_track_ids: Sequence[int],
               camera_id: str) -> None:
        """Smooth, apply rules and publish ``events``; then close the ended tracks."""
        with self._lock, self._metrics.time_stage("publish"):
            for event in events:
                smoothed, alerts = self._alerts.observe(event)
                self._publisher.publish_event(event, smoothed)
                now = time.time()
                self._metrics.observe_event_latency(now - event.wall_ts_s)
                self._last_frame_ts[event.camera_id] = event.wall_ts_s
                self._last_publish_ts[event.camera_id] = now
                self.top_emotions[event.emotion.top_class] += 1
                for alert in alerts:
                    alert = self._with_evidence(alert)
                    log.warning("ALERT %s", alert.summary)
                    self._publisher.publish_alert(alert)
                    self._metrics.count(camera_id, "alerts")
                    for listener in self.alert_listeners:
                        listener(alert)
            for track_id in ended_track_ids:
                self._alerts.end_track(camera_id, track_id)
            self._publish_evidence()
            self._publisher.poll()
            self._snapshot()

    def poll(self) -> None:
        with self._lock:
            self._publish_evidence()
            self._publisher.poll()
            self._snapshot()

    def flush(self) -> None:
        with self._lock:
            self._publish_evidence()
            self._publisher.flush()
            self._snapshot()

    def finish_evidence(self, timeout_s: float = 60.0) -> None:
        """The sources stopped: wait (up to ``timeout_s``) for the evidence of every alert
        so far to be written with what was buffered, and publish its messages."""
        if self._evidence is None:
            return
        self._evidence.finish_all()
        if not self._evidence.wait_idle(timeout_s):
            log.error("evidence: %d alerts still waiting after %.0f s; their evidence "
                      "messages are not published", self._evidence.stats().pending, timeout_s)
        self.flush()

    def _with_evidence(self, alert: Alert) -> Alert:
        """The alert with its planned evidence URIs; unchanged when planning fails (the
        alert is never held back or lost for its evidence)."""
        if self._evidence is None:
            return alert
        try:
            return self._evidence.attach(alert)
        except Exception:
            log.exception("evidence for alert %s could not be planned", alert.msg_id)
            self._metrics.count(alert.camera_id, "evidence_failed")
            return alert

    def _publish_evidence(self) -> None:
        if self._evidence is None:
            return
        for message in self._evidence.take_messages():
            self._publisher.publish_evidence(message)

    def state(self) -> OutputState:
        """The latest snapshot; safe from any thread, never blocks on Redis."""
        with self._state_lock:
            return self._state

    def _snapshot(self) -> None:
        """Refresh :meth:`state`; called by the owning thread after each operation."""
        publisher = self._publisher
        if publisher is None:
            return
        stats = self._final or publisher.stats()
        state = OutputState(stats, publisher.spool.stats().depth_bytes,
                            self._state.spool_max_messages, self._state.spool_max_bytes,
                            dict(self._last_frame_ts), dict(self._last_publish_ts))
        with self._state_lock:
            self._state = state
