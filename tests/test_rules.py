"""Rules on scripted track histories: threshold, duration, cooldown, crowd, zones, validation."""

from __future__ import annotations

import pytest

from pipeline.config import AlertRuleConfig, AlertsConfig, SmoothingConfig, parse_config
from pipeline.errors import ConfigError
from pipeline.records import EmotionResult, FaceEvent
from pipeline.rules import AlertEngine

CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
# Smoothing that follows observations at once, so scripts test the rules, not the filter.
NO_SMOOTHING = SmoothingConfig(half_life_s=1e-3, prior_strength=1e-3)


def emotion(fear: float) -> EmotionResult:
    rest = (1.0 - fear) / (len(CLASSES) - 1)
    return EmotionResult(CLASSES, tuple(fear if c == "fear" else rest for c in CLASSES),
                         sr_applied=True)


def face(ts_ms: float, fear: float, track: int = 1, camera: str = "cam1",
         centre: tuple[float, float] = (100.0, 100.0)) -> FaceEvent:
    x, y = centre
    return FaceEvent(camera_id=camera, track_id=track, frame_index=int(ts_ms // 40), ts_ms=ts_ms,
                     wall_ts_s=1.7e9 + ts_ms / 1000, bbox_xyxy=(x - 10, y - 10, x + 10, y + 10),
                     face_size_px=20.0, quality=0.8, emotion=emotion(fear),
                     first_seen_ts_ms=0.0, last_seen_ts_ms=ts_ms)


def engine(**rule: object) -> AlertEngine:
    base: dict[str, object] = {"id": "fear", "emotions": ["fear"], "threshold": 0.6,
                               "min_duration_s": 2.0, "cooldown_s": 10.0}
    base.update(rule)
    return AlertEngine(AlertsConfig(rules=[AlertRuleConfig(**base)]), NO_SMOOTHING, "st1",
                       class_names=CLASSES)


def run(eng: AlertEngine, script: list[FaceEvent]) -> list[tuple[float, list[int]]]:
    fired = []
    for event in script:
        _, alerts = eng.observe(event)
        fired += [(a.ts_ms, [t.track_id for t in a.tracks]) for a in alerts]
    return fired


def test_fires_once_after_min_duration_above_threshold() -> None:
    script = [face(t, 0.9) for t in range(0, 5001, 500)]
    assert run(engine(), script) == [(2000.0, [1])]


def test_below_threshold_never_fires() -> None:
    assert run(engine(), [face(t, 0.55) for t in range(0, 10001, 500)]) == []


def test_interrupted_episode_restarts_the_duration() -> None:
    script = [face(0, 0.9), face(1000, 0.9), face(1500, 0.2), face(2000, 0.9),
              face(3000, 0.9), face(3900, 0.9), face(4000, 0.9)]
    assert run(engine(), script) == [(4000.0, [1])]


def test_cooldown_blocks_a_second_episode_then_allows_it() -> None:
    eng = engine(min_duration_s=0.0, cooldown_s=10.0)
    script = [face(0, 0.9), face(1000, 0.1), face(2000, 0.9),  # 2nd episode inside cooldown
              face(3000, 0.1), face(12000, 0.9)]  # 3rd episode after it
    assert run(eng, script) == [(0.0, [1]), (12000.0, [1])]


def test_cooldown_per_camera_covers_other_tracks() -> None:
    per_track = run(engine(min_duration_s=0.0), [face(0, 0.9, 1), face(100, 0.9, 2)])
    per_camera = run(engine(min_duration_s=0.0, cooldown_scope="camera"),
                     [face(0, 0.9, 1), face(100, 0.9, 2), face(11000, 0.9, 3)])
    assert per_track == [(0.0, [1]), (100.0, [2])]
    assert per_camera == [(0.0, [1]), (11000.0, [3])]


def test_crowd_rule_needs_enough_tracks_for_long_enough() -> None:
    eng = engine(id="crowd", min_tracks=3, min_duration_s=1.0, cooldown_s=30.0)
    script = []
    for t in range(0, 3001, 500):
        script += [face(t, 0.9, 1), face(t, 0.9, 2)]  # only two tracks: no alert
        if t >= 1000:
            script.append(face(t, 0.9, 3))  # third joins at 1 s, long enough at 2 s
    fired = run(eng, script)
    assert fired == [(2000.0, [1, 2, 3])]


def test_crowd_rule_ignores_stale_tracks() -> None:
    eng = AlertEngine(AlertsConfig(track_stale_s=1.0, rules=[AlertRuleConfig(
        id="crowd", emotions=["fear"], min_tracks=2, min_duration_s=0.0)]),
        NO_SMOOTHING, "st1", class_names=CLASSES)
    assert run(eng, [face(0, 0.9, 1), face(5000, 0.9, 2)]) == []


def test_zone_uses_box_centre_in_frame_pixels() -> None:
    zone = [(0.0, 0.0), (200.0, 0.0), (200.0, 200.0), (0.0, 200.0)]
    eng = engine(min_duration_s=0.0, zones=[zone])
    outside = run(eng, [face(0, 0.9, 1, centre=(300.0, 100.0))])
    inside = run(eng, [face(100, 0.9, 2, centre=(150.0, 150.0))])
    assert outside == [] and inside == [(100.0, [2])]


def test_rule_only_for_its_cameras() -> None:
    eng = engine(min_duration_s=0.0, cameras=["cam2"])
    assert run(eng, [face(0, 0.9, camera="cam1")]) == []
    assert run(eng, [face(0, 0.9, camera="cam2")]) == [(0.0, [1])]


def test_end_track_forgets_state() -> None:
    eng = engine(min_duration_s=1.0)
    run(eng, [face(0, 0.9), face(900, 0.9)])
    eng.end_track("cam1", 1)
    assert run(eng, [face(1000, 0.9)]) == []  # duration restarts for the new episode


def test_smoothing_delays_alert_on_a_single_spike() -> None:
    smooth = SmoothingConfig(half_life_s=3.0, prior_strength=2.0)
    eng = AlertEngine(AlertsConfig(rules=[AlertRuleConfig(
        id="fear", emotions=["fear"], threshold=0.6, min_duration_s=0.0, min_confidence=0.5)]),
        smooth, "st1", class_names=CLASSES)
    fired = run(eng, [face(t, 0.05) for t in range(0, 5000, 1000)] + [face(5000, 0.95)])
    assert fired == []  # one fearful frame after calm ones does not move the smoothed state
    fired = run(eng, [face(t, 0.95) for t in range(6000, 12000, 1000)])
    assert len(fired) == 1


def test_alert_carries_rule_and_track_details() -> None:
    eng = engine(min_duration_s=1.0, severity="high")
    alerts = [a for e in [face(0, 0.9), face(1500, 0.9)] for a in eng.observe(e)[1]]
    (alert,) = alerts
    assert alert.rule_id == "fear" and alert.severity == "high" and alert.station_id == "st1"
    assert alert.duration_ms == 1500.0 and alert.sr_applied is True
    assert alert.tracks[0].bbox_xyxy == (90.0, 90.0, 110.0, 110.0)
    assert alert.tracks[0].score == pytest.approx(0.9)
    assert "fear" in alert.summary


def test_unknown_emotion_refused_at_start() -> None:
    cfg = AlertsConfig(rules=[AlertRuleConfig(id="x", emotions=["feer"])])
    with pytest.raises(ConfigError, match=r"alerts\.rules\.0 \(id 'x'\)\.emotions: unknown"):
        AlertEngine(cfg, NO_SMOOTHING, "st1", class_names=CLASSES)


def test_unknown_camera_refused_at_start() -> None:
    cfg = AlertsConfig(rules=[AlertRuleConfig(id="x", emotions=["fear"], cameras=["nope"])])
    with pytest.raises(ConfigError, match="cameras: unknown"):
        AlertEngine(cfg, NO_SMOOTHING, "st1", class_names=CLASSES, camera_ids=["cam1"])


@pytest.mark.parametrize(("yaml_rule", "message"), [
    ("{id: a, emotions: [fear], threshold: 1.5}", "alerts.rules.0.threshold"),
    ("{id: a, emotions: []}", "alerts.rules.0.emotions"),
    ("{id: a, emotions: [fear, fear]}", "emotions must be unique"),
    ("{id: a, emotions: [fear], zones: [[[0, 0], [1, 1]]]}", "at least 3 points"),
    ("{id: a, emotions: [fear], severity: urgent}", "alerts.rules.0.severity"),
    ("{id: a, emotions: [fear], min_tracks: 0}", "alerts.rules.0.min_tracks"),
    ("{id: a, emotions: [fear], colour: red}", "alerts.rules.0.colour"),
])
def test_invalid_rules_refused_with_field_and_line(yaml_rule: str, message: str) -> None:
    text = f"station: {{id: st1}}\nalerts:\n  rules:\n    - {yaml_rule}\n"
    with pytest.raises(ConfigError, match=message):
        parse_config(text, source="station.yaml")


def test_duplicate_rule_ids_refused() -> None:
    text = "alerts:\n  rules:\n    - {id: a, emotions: [fear]}\n    - {id: a, emotions: [anger]}\n"
    with pytest.raises(ConfigError, match=r"station.yaml:2: alerts.rules: .*repeated: \['a'\]"):
        parse_config(text, source="station.yaml")
