"""Smoothing + rules: turns FaceEvents into smoothed state and alerts, in stream time.

Semantics (docs/events.md has the same in prose):
- A track *matches* a rule when the rule applies to its camera, its box centre lies in one of
  the rule's zones (if any), its smoothed confidence is at least ``min_confidence`` and the
  rule's score (max or sum of the listed emotions' smoothed probabilities) is at least
  ``threshold``. It has matched *for long enough* once it has matched continuously (at every
  observation) for ``min_duration_s`` of stream time.
- Track rules (``min_tracks == 1``) fire once per episode of a track (an episode ends when the
  track stops matching) and not again within ``cooldown_s`` of the previous alert of the same
  track (``cooldown_scope: track``) or of any track on the camera (``camera``).
- Crowd rules (``min_tracks > 1``) fire per camera when at least ``min_tracks`` tracks seen in
  the last ``track_stale_s`` have matched for long enough; once per episode of the camera
  (it ends when fewer tracks match) and not again within ``cooldown_s``.
- With ``shared_cooldowns`` (cluster modes, pipeline/cluster/cooldowns.py) an alert also needs
  the station-wide cooldown claim, so the worker that takes a camera over does not repeat
  the alert its previous owner just sent; when the claim cannot be checked, local rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from pipeline.config import AlertRuleConfig, AlertsConfig, SmoothingConfig
from pipeline.errors import ConfigError
from pipeline.records import FaceEvent
from pipeline.rules.alert import Alert, AlertTrack
from pipeline.rules.zones import box_centre, in_any_zone
from pipeline.smoothing import EmotionSmoother, SmoothedEmotion


def validate_rules(cfg: AlertsConfig, class_names: Sequence[str] | None = None,
                   camera_ids: Sequence[str] | None = None) -> None:
    """Refuse rules naming emotions the classifier lacks or cameras the config lacks."""
    problems = []
    for i, rule in enumerate(cfg.rules):
        where = f"alerts.rules.{i} (id {rule.id!r})"
        if class_names is not None:
            unknown = [e for e in rule.emotions if e not in class_names]
            if unknown:
                problems.append(f"{where}.emotions: unknown {unknown}, expected some of "
                                f"{list(class_names)}")
        if camera_ids is not None:
            unknown = [c for c in rule.cameras if c not in camera_ids]
            if unknown:
                problems.append(f"{where}.cameras: unknown {unknown}, configured cameras are "
                                f"{list(camera_ids)}")
    if problems:
        raise ConfigError("; ".join(problems))


class SharedCooldowns(Protocol):
    """A cooldown shared by the workers of a station (wall-clock time)."""

    def claim(self, rule_id: str, camera_id: str, scope: str, cooldown_s: float) -> bool:
        """True when no worker fired ``rule_id`` for ``(camera_id, scope)`` within
        ``cooldown_s``, and the claim is now ours; True too when it cannot be checked."""
        ...


@dataclass
class _Match:
    """A track's standing against one rule."""

    since_ts_ms: float | None = None
    fired: bool = False
    score: float = 0.0


@dataclass
class _Seen:
    event: FaceEvent
    smoothed: SmoothedEmotion


class AlertEngine:
    """One per station. ``observe`` each FaceEvent in stream order per camera."""

    def __init__(self, cfg: AlertsConfig, smoothing: SmoothingConfig, station_id: str, *,
                 class_names: Sequence[str] | None = None,
                 camera_ids: Sequence[str] | None = None,
                 shared_cooldowns: SharedCooldowns | None = None) -> None:
        validate_rules(cfg, class_names, camera_ids)
        self._shared = shared_cooldowns
        self.cfg = cfg
        self.station_id = station_id
        self._class_names = tuple(class_names) if class_names is not None else None
        self._smoother = EmotionSmoother(smoothing)
        self._stale_ms = cfg.track_stale_s * 1000.0
        self._seen: dict[tuple[str, int], _Seen] = {}
        self._match: dict[tuple[str, str, int], _Match] = {}  # (rule, camera, track)
        self._last_fire: dict[tuple[str, str, int | None], float] = {}  # track None = camera
        self._crowd_active: dict[tuple[str, str], bool] = {}
        self.alerts_fired = 0

    def _rules_for(self, camera_id: str) -> list[AlertRuleConfig]:
        return [r for r in self.cfg.rules if not r.cameras or camera_id in r.cameras]

    @staticmethod
    def _score(rule: AlertRuleConfig, smoothed: SmoothedEmotion) -> float:
        values = [smoothed.probability(e) for e in rule.emotions]
        return min(sum(values), 1.0) if rule.combine == "sum" else max(values)

    def observe(self, event: FaceEvent) -> tuple[SmoothedEmotion, list[Alert]]:
        if self._class_names is None:
            self._class_names = tuple(event.emotion.class_names)
            validate_rules(self.cfg, self._class_names)
        camera, track, ts = event.camera_id, event.track_id, event.ts_ms
        smoothed = self._smoother.update(camera, track, ts, event.emotion)
        self._seen[(camera, track)] = _Seen(event, smoothed)
        for gone in self._smoother.expire(camera, ts):
            self._forget(camera, gone)
        centre = box_centre(event.bbox_xyxy)
        alerts: list[Alert] = []
        for rule in self._rules_for(camera):
            state = self._match.setdefault((rule.id, camera, track), _Match())
            state.score = self._score(rule, smoothed)
            matches = (state.score >= rule.threshold
                       and smoothed.confidence >= rule.min_confidence
                       and in_any_zone(centre, rule.zones))
            if not matches:
                state.since_ts_ms, state.fired = None, False
            elif state.since_ts_ms is None:
                state.since_ts_ms = ts
            alert = (self._check_track_rule(rule, event, state) if rule.min_tracks == 1
                     else self._check_crowd_rule(rule, event))
            if alert is not None:
                alerts.append(alert)
        self.alerts_fired += len(alerts)
        return smoothed, alerts

    def _long_enough(self, rule: AlertRuleConfig, state: _Match, ts_ms: float) -> bool:
        return (state.since_ts_ms is not None
                and ts_ms - state.since_ts_ms >= rule.min_duration_s * 1000.0)

    def _cooled_down(self, rule: AlertRuleConfig, key: tuple[str, str, int | None],
                     ts_ms: float) -> bool:
        last = self._last_fire.get(key)
        return last is None or ts_ms - last >= rule.cooldown_s * 1000.0

    def _check_track_rule(self, rule: AlertRuleConfig, event: FaceEvent,
                          state: _Match) -> Alert | None:
        ts = event.ts_ms
        if state.fired or not self._long_enough(rule, state, ts):
            return None
        scope_track = event.track_id if rule.cooldown_scope == "track" else None
        key = (rule.id, event.camera_id, scope_track)
        if not self._cooled_down(rule, key, ts):
            return None
        state.fired = True
        self._last_fire[key] = ts
        scope = "camera" if scope_track is None else (
            event.run.track_uid(event.track_id) if event.run else str(event.track_id))
        if not self._claim(rule, event.camera_id, scope):
            return None
        return self._alert(rule, event, [(event.track_id, state)])

    def _check_crowd_rule(self, rule: AlertRuleConfig, event: FaceEvent) -> Alert | None:
        camera, ts = event.camera_id, event.ts_ms
        qualifying = []
        for (rule_id, cam, track), state in self._match.items():
            if rule_id != rule.id or cam != camera:
                continue
            seen = self._seen.get((cam, track))
            if (seen is not None and ts - seen.event.ts_ms <= self._stale_ms
                    and self._long_enough(rule, state, ts)):
                qualifying.append((track, state))
        episode = (rule.id, camera)
        if len(qualifying) < rule.min_tracks:
            self._crowd_active[episode] = False
            return None
        key = (rule.id, camera, None)
        if self._crowd_active.get(episode) or not self._cooled_down(rule, key, ts):
            return None
        self._crowd_active[episode] = True
        self._last_fire[key] = ts
        if not self._claim(rule, camera, "camera"):
            return None
        return self._alert(rule, event, sorted(qualifying, key=lambda item: item[0]))

    def _claim(self, rule: AlertRuleConfig, camera_id: str, scope: str) -> bool:
        """The station-wide cooldown (another worker may have fired it); a refused claim
        counts as this episode's alert, so it is not tried again at every observation."""
        if self._shared is None or rule.cooldown_s <= 0:
            return True
        return self._shared.claim(rule.id, camera_id, scope, rule.cooldown_s)

    def _alert(self, rule: AlertRuleConfig, event: FaceEvent,
               matched: list[tuple[int, _Match]]) -> Alert:
        tracks = []
        sr_applied = False
        for track_id, state in matched:
            seen = self._seen[(event.camera_id, track_id)]
            sr_applied = sr_applied or seen.event.emotion.sr_applied
            tracks.append(AlertTrack(
                track_id=track_id,
                first_seen_ts_ms=seen.event.first_seen_ts_ms,
                last_seen_ts_ms=seen.event.last_seen_ts_ms,
                bbox_xyxy=tuple(float(v) for v in seen.event.bbox_xyxy),
                score=state.score,
                confidence=seen.smoothed.confidence,
                matched_since_ts_ms=float(
                    event.ts_ms if state.since_ts_ms is None else state.since_ts_ms),
            ))
        duration = min(event.ts_ms - t.matched_since_ts_ms for t in tracks)
        return Alert(
            station_id=self.station_id, camera_id=event.camera_id, rule_id=rule.id,
            severity=rule.severity, emotions=tuple(rule.emotions), threshold=rule.threshold,
            ts_ms=event.ts_ms, wall_ts_s=event.wall_ts_s, duration_ms=duration,
            sr_applied=sr_applied, tracks=tuple(tracks), run=event.run)

    def _forget(self, camera_id: str, track_id: int) -> None:
        self._seen.pop((camera_id, track_id), None)
        for rule in self.cfg.rules:
            self._match.pop((rule.id, camera_id, track_id), None)
            self._last_fire.pop((rule.id, camera_id, track_id), None)

    def end_track(self, camera_id: str, track_id: int) -> None:
        """The tracker dropped this track: forget its state (its cooldown goes with it)."""
        self._smoother.end_track(camera_id, track_id)
        self._forget(camera_id, track_id)
