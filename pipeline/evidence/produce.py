"""Turning one alert's buffered video, boxes and crops into stored files and the
``cctv.evidence.v1`` message that references them (run on the evidence worker thread).

Each file is made and stored on its own: one that fails is logged, counted and listed with
``status: failed``; the others are still written. Nothing here raises for a bad file.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from pipeline.config import EvidenceConfig
from pipeline.errors import EvidenceError
from pipeline.events import EvidenceRefV1, EvidenceV1, new_msg_id
from pipeline.evidence.clip import ClipWindow, cut_window, frame_at, write_clip
from pipeline.evidence.context import AnalysisContext, FaceCrop
from pipeline.evidence.ring import RingView
from pipeline.evidence.snapshot import encode_image, render_snapshot
from pipeline.evidence.store import EvidenceStore
from pipeline.rules.alert import Alert

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvidencePlan:
    """What an alert's evidence will be: store keys, the requested clip window (stream
    time, ms) and the crops captured when it fired."""

    alert: Alert
    start_ms: float
    end_ms: float
    clip_key: str | None
    snapshot_key: str | None
    crops: tuple[tuple[str, FaceCrop], ...] = field(default=())  # (key, crop)

    @property
    def keys(self) -> list[str]:
        keys = [k for k in (self.clip_key, self.snapshot_key) if k is not None]
        return keys + [key for key, _crop in self.crops]


def plan_evidence(cfg: EvidenceConfig, alert: Alert, context: AnalysisContext) -> EvidencePlan:
    """Keys ``<camera>/<yyyymmdd>/<alert msg_id>/...`` (UTC date of the alert) and the
    crops of the involved tracks as they are now."""
    day = datetime.fromtimestamp(alert.wall_ts_s, tz=timezone.utc).strftime("%Y%m%d")
    folder = f"{alert.camera_id}/{day}/{alert.msg_id}"
    crops: list[tuple[str, FaceCrop]] = []
    if cfg.crops:
        for track in alert.tracks:
            for i, crop in enumerate(context.crops_of(alert.camera_id, track.track_id,
                                                      alert.ts_ms)):
                crops.append((f"{folder}/crop-t{track.track_id}-{i}.png", crop))
    return EvidencePlan(alert, alert.ts_ms - cfg.pre_s * 1000.0,
                        alert.ts_ms + cfg.post_s * 1000.0,
                        f"{folder}/clip.mp4" if cfg.clip else None,
                        f"{folder}/snapshot.jpg" if cfg.snapshot else None, tuple(crops))


@dataclass
class _Outcome:
    refs: list[EvidenceRefV1] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    written: int = 0
    failed: int = 0
    reason: str = ""  # for the audit log


class EvidenceProducer:
    """Writes planned evidence to ``store``; see the module doc."""

    def __init__(self, cfg: EvidenceConfig, store: EvidenceStore,
                 context: AnalysisContext) -> None:
        self.cfg = cfg
        self.store = store
        self.context = context

    def produce(self, plan: EvidencePlan, view: RingView | None,
                why_now: str | None) -> tuple[EvidenceV1, int, int]:
        """Make and store the plan's files from ``view`` (the alert's segment of the ring).
        Returns the message and how many files were written and failed. ``why_now``: why
        the clip could not wait for the whole post-alert window, if so."""
        alert = plan.alert
        out = _Outcome(reason=f"alert {alert.msg_id} ({alert.rule_id})")
        if why_now:
            out.notes.append(why_now)
        window = cut_window(view, plan.start_ms, plan.end_ms) if view is not None else None
        clip = None
        if window is None:
            out.notes.append("no video buffered for the alert (camera not streaming)")
        else:
            self._note_coverage(plan, window, view, out)
            clip = self._attempt(out, "clip", lambda: write_clip(window))
        if plan.clip_key is not None:
            self._store(out, "clip", plan.clip_key, clip,
                        window.start_ms if window else plan.start_ms,
                        window.end_ms if window else plan.end_ms)
        if plan.snapshot_key is not None:
            image = None
            if clip is not None:
                image = self._attempt(out, "snapshot", lambda: self._snapshot(plan, clip, window))
            self._store(out, "snapshot", plan.snapshot_key, image, alert.ts_ms, alert.ts_ms)
        for key, crop in plan.crops:
            data = self._attempt(out, "crop", lambda c=crop: encode_image(c.image_bgr, ".png"))
            self._store(out, "crop", key, data, crop.ts_ms, crop.ts_ms, track_id=crop.track_id)
        complete = out.failed == 0 and not out.notes
        message = EvidenceV1(
            msg_id=new_msg_id(), station_id=alert.station_id, camera_id=alert.camera_id,
            alert_msg_id=alert.msg_id, rule_id=alert.rule_id, alert_ts_ms=alert.ts_ms,
            wall_ts_s=time.time(), requested_start_ms=plan.start_ms,
            requested_end_ms=plan.end_ms, complete=complete, refs=out.refs, notes=out.notes)
        return message, out.written, out.failed

    def _note_coverage(self, plan: EvidencePlan, window: ClipWindow, view: RingView,
                       out: _Outcome) -> None:
        step_ms = 1000.0 * window.template.step_s
        if window.start_ms > plan.start_ms + step_ms:
            out.notes.append(f"clip starts {(window.start_ms - plan.start_ms) / 1000:.1f} s "
                             f"after the requested start: no earlier video was buffered")
        if window.end_ms < plan.end_ms - 1.5 * step_ms:  # (RTP timestamps jitter)
            cause = ("the stream ended, stopped or reconnected" if view.closed
                     else "timed out")
            out.notes.append(f"clip ends {(plan.end_ms - window.end_ms) / 1000:.1f} s before "
                             f"the requested end: {cause}")

    def _snapshot(self, plan: EvidencePlan, clip: bytes, window: ClipWindow) -> bytes:
        alert = plan.alert
        image = frame_at(clip, alert.ts_ms - window.start_ms)
        faces = self.context.faces_at(alert.camera_id, alert.ts_ms) or {}
        involved = {t.track_id: faces.get(t.track_id, t.bbox_xyxy) for t in alert.tracks}
        labels = {t.track_id: f"{t.score:.2f}" for t in alert.tracks}
        others = [box for track_id, box in faces.items() if track_id not in involved]
        caption = f"{alert.rule_id}: {'/'.join(alert.emotions)} at {alert.ts_ms / 1000:.2f} s"
        image = render_snapshot(image, involved, labels, others,
                                self.cfg.blur_uninvolved_faces, caption)
        return encode_image(image, ".jpg", self.cfg.jpeg_quality)

    @staticmethod
    def _attempt(out: _Outcome, kind: str, make: Callable[[], bytes]) -> bytes | None:
        try:
            return make()
        except EvidenceError as err:
            log.error("evidence %s: %s", kind, err)
            out.notes.append(f"{kind}: {err}")
            return None

    def _store(self, out: _Outcome, kind: str, key: str, data: bytes | None,
               start_ms: float, end_ms: float, track_id: int | None = None) -> None:
        uri = self.store.uri_for(key)
        stored = None
        if data is not None:
            try:
                stored = self.store.put(key, data, reason=f"{kind} of {out.reason}")
            except EvidenceError as err:
                log.error("evidence %s: %s", kind, err)
                out.notes.append(f"{kind}: {err}")
        if stored is None:
            out.failed += 1
            out.refs.append(EvidenceRefV1(kind=kind, uri=uri, status="failed",
                                          start_ms=start_ms, end_ms=end_ms, track_id=track_id))
            return
        out.written += 1
        out.refs.append(EvidenceRefV1(kind=kind, uri=stored.uri, status="written",
                                      start_ms=start_ms, end_ms=end_ms, sha256=stored.sha256,
                                      bytes=stored.size_bytes, track_id=track_id))
