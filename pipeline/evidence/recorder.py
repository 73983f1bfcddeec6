"""The evidence recorder: per-camera packet rings, alert evidence planned at once, written
off the camera and output threads.

Threads (the runner owns them all):
- each camera's decode thread feeds its :class:`~pipeline.evidence.ring.PacketRing`
  (:meth:`EvidenceRecorder.ring` is the source's packet observer);
- analysis threads and the emotion worker note face boxes and restored crops
  (:meth:`note_faces`, :meth:`note_crops`);
- the output thread, when a rule fires, calls :meth:`attach`: it plans the files, returns the
  alert with their URIs in ``evidence`` (published at once: operators never wait for
  evidence) and queues the plan; later it publishes what :meth:`take_messages` returns;
- the evidence worker (:meth:`serve`) writes a plan once its camera has delivered video up
  to ``post_s`` after the alert, or its segment ended (reconnection, end of the replayed
  file, stop), or it waited ``post_s + ring_max_s`` of wall time (a camera gone quiet);
  then it queues the ``cctv.evidence.v1`` message. It also enforces retention.

Overflow: at most ``max_pending`` plans wait; one more makes the oldest be written at once
with what its ring holds (noted in its message). A failure to write is logged and counted
(``evidence_failed``) and never stops the pipeline or holds the alert back.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.config import EvidenceConfig
from pipeline.events import EvidenceV1
from pipeline.evidence.context import AnalysisContext, FaceCrop
from pipeline.evidence.produce import EvidencePlan, EvidenceProducer, plan_evidence
from pipeline.evidence.ring import PacketRing, Segment
from pipeline.evidence.store import EvidenceStore, LocalEvidenceStore
from pipeline.metrics import RunMetrics
from pipeline.records import TrackedFace
from pipeline.rules.alert import Alert

if TYPE_CHECKING:  # the classifier stage is not needed to record evidence
    from pipeline.classify import ClassifiedFace

log = logging.getLogger(__name__)

POLL_S = 0.25


@dataclass
class _Pending:
    plan: EvidencePlan
    ring: PacketRing | None
    segment: Segment | None
    give_up_at: float  # monotonic
    why_now: str | None = None


@dataclass(frozen=True)
class EvidenceStats:
    alerts: int  # alerts evidence was planned for
    files_written: int
    files_failed: int
    pending: int


class EvidenceRecorder:
    """See the module doc. ``max_gap_s``: the sources' timestamp-jump threshold."""

    def __init__(self, cfg: EvidenceConfig, metrics: RunMetrics | None = None,
                 store: EvidenceStore | None = None, max_gap_s: float = 10.0) -> None:
        self.cfg = cfg
        self.store = store if store is not None else LocalEvidenceStore(cfg)
        self._metrics = metrics
        self._max_gap_s = max_gap_s
        self._context = AnalysisContext(cfg.ring_max_s, cfg.max_crops_per_track)
        self._producer = EvidenceProducer(cfg, self.store, self._context)
        self._rings: dict[str, PacketRing] = {}
        self._cond = threading.Condition()
        self._pending: deque[_Pending] = deque()
        self._busy = 0  # plans taken by the worker, not yet done
        self._done: deque[EvidenceV1] = deque()
        self._closed = False
        self._alerts = self._written = self._failed = 0

    # -- feeding (decode, analysis and emotion threads) -----------------------------------
    def ring(self, camera_id: str) -> PacketRing:
        """The camera's ring buffer (made on first use): pass it to the source as its packet
        observer."""
        with self._cond:
            ring = self._rings.get(camera_id)
            if ring is None:
                ring = self._rings[camera_id] = PacketRing(
                    camera_id, self.cfg.ring_max_s, int(self.cfg.ring_max_mb * 1024 * 1024),
                    self._max_gap_s)
            return ring

    def note_faces(self, camera_id: str, ts_ms: float, faces: Sequence[TrackedFace]) -> None:
        self._context.note_faces(camera_id, ts_ms, faces)

    def note_crops(self, faces: Sequence[ClassifiedFace]) -> None:
        """The restored crops the classifier read (only faces, not rejected crops)."""
        if not self.cfg.crops:
            return
        for face in faces:
            if face.is_face:
                event = face.event
                self._context.note_crop(FaceCrop(event.camera_id, event.track_id, event.ts_ms,
                                                 face.restored_bgr, event.emotion.top_class))

    def finish_camera(self, camera_id: str) -> None:
        """The camera's source stopped (end of a replayed file): its waiting clips are
        written with what was buffered."""
        with self._cond:
            ring = self._rings.get(camera_id)
        if ring is not None:
            ring.close()
        with self._cond:
            self._cond.notify_all()

    def finish_all(self) -> None:
        for camera_id in list(self._rings):
            self.finish_camera(camera_id)

    # -- output thread ---------------------------------------------------------------------
    def attach(self, alert: Alert) -> Alert:
        """Plan the alert's evidence and return the alert carrying the planned URIs."""
        plan = plan_evidence(self.cfg, alert, self._context)
        with self._cond:
            ring = self._rings.get(alert.camera_id)
            segment = ring.current() if ring is not None else None
            pending = _Pending(plan, ring, segment,
                               time.monotonic() + self.cfg.post_s + self.cfg.ring_max_s)
            if segment is None:
                pending.why_now = "no video buffered for this camera"
            self._pending.append(pending)
            self._alerts += 1
            waiting = [p for p in self._pending if p.why_now is None]
            if len(waiting) > self.cfg.max_pending:
                waiting[0].why_now = (f"written early: more than {self.cfg.max_pending} "
                                      f"alerts were waiting for video")
            self._cond.notify_all()
        return dataclasses.replace(alert, evidence=tuple(self.store.uri_for(k)
                                                         for k in plan.keys))

    def take_messages(self) -> list[EvidenceV1]:
        """Evidence messages completed since the last call, in completion order."""
        with self._cond:
            messages = list(self._done)
            self._done.clear()
        return messages

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no plan is waiting or being written; False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self._pending or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)
        return True

    def stats(self) -> EvidenceStats:
        with self._cond:
            return EvidenceStats(self._alerts, self._written, self._failed,
                                 len(self._pending) + self._busy)

    # -- worker thread -----------------------------------------------------------------------
    def serve(self) -> None:
        """The evidence worker's loop (the runner runs it in a thread): returns after
        :meth:`close` once every waiting plan is written."""
        next_retention = 0.0
        while True:
            with self._cond:
                ready = self._take_ready()
                if not ready:
                    if self._closed and not self._pending:
                        return
                    self._cond.wait(POLL_S)
                    ready = self._take_ready()
            if time.monotonic() >= next_retention:
                next_retention = time.monotonic() + self.cfg.retention.check_interval_s
                self._enforce_retention()
            for pending in ready:
                self._write(pending)

    def close(self) -> None:
        """Finish every camera and let :meth:`serve` return once the plans are written."""
        self.finish_all()
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _take_ready(self) -> list[_Pending]:
        """Plans that can be written now (under the lock); they count as busy."""
        now = time.monotonic()
        ready = []
        for pending in list(self._pending):
            reason = self._ready_reason(pending, now)
            if reason is not None:
                self._pending.remove(pending)
                pending.why_now = pending.why_now or (reason or None)
                ready.append(pending)
        self._busy += len(ready)
        return ready

    def _ready_reason(self, pending: _Pending, now: float) -> str | None:
        """None: keep waiting; "" ready with the whole window; else why it is written now."""
        if pending.why_now is not None or pending.segment is None or pending.ring is None:
            return pending.why_now or "no video buffered for this camera"
        reached_ms, closed = pending.ring.reached(pending.segment)
        if closed or now >= pending.give_up_at:
            return ""  # its coverage note says how much of the window the video reached
        return "" if reached_ms is not None and reached_ms >= pending.plan.end_ms else None

    def _write(self, pending: _Pending) -> None:
        started = time.perf_counter()
        alert = pending.plan.alert
        try:
            view = (pending.ring.view(pending.segment)
                    if pending.ring is not None and pending.segment is not None else None)
            message, written, failed = self._producer.produce(pending.plan, view,
                                                              pending.why_now)
        except Exception:  # a bug must not kill the worker: the alert itself is published
            log.exception("evidence for alert %s failed", alert.msg_id)
            message, written, failed = None, 0, len(pending.plan.keys)
        self._count(alert.camera_id, written, failed)
        if message is not None:
            log.info("evidence for alert %s (%s, camera %s) in %s: %d files written, %d "
                     "failed in %.0f ms%s", alert.msg_id, alert.rule_id, alert.camera_id,
                     self.store.location, written, failed,
                     1000 * (time.perf_counter() - started),
                     f"; {'; '.join(message.notes)}" if message.notes else "")
        with self._cond:
            if message is not None:
                self._done.append(message)
            self._busy -= 1
            self._written += written
            self._failed += failed
            self._cond.notify_all()

    def _count(self, camera_id: str, written: int, failed: int) -> None:
        if self._metrics is not None:
            self._metrics.count(camera_id, "evidence_written", written)
            self._metrics.count(camera_id, "evidence_failed", failed)

    def _enforce_retention(self) -> None:
        try:
            result = self.store.enforce_retention()
        except Exception:
            log.exception("evidence retention failed")
            return
        if result.deleted_by_age or result.deleted_by_size:
            log.info("evidence retention: %d files deleted by age, %d by size; %.1f MB kept",
                     result.deleted_by_age, result.deleted_by_size,
                     result.total_bytes / 1024 / 1024)
