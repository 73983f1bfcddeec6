"""EventPublisher against a real redis-server: batching, retention, outages, rejections."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import redis

from pipeline.config import AlertRuleConfig, AlertsConfig, RedisConfig, SmoothingConfig, SpoolConfig
from pipeline.errors import SinkError
from pipeline.events import AlertV1, FaceTrackEventV1, from_fields
from pipeline.records import EmotionResult, FaceEvent
from pipeline.rules import AlertEngine
from pipeline.sinks.embedded import EmbeddedRedis
from pipeline.sinks.publisher import EventPublisher
from pipeline.sinks.streams import alerts_stream, events_stream

CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def face(camera: str, track: int, ts_ms: float, fear: float) -> FaceEvent:
    rest = (1 - fear) / 7
    emo = EmotionResult(CLASSES, tuple(fear if c == "fear" else rest for c in CLASSES),
                        sr_applied=track % 2 == 0)
    return FaceEvent(camera_id=camera, track_id=track, frame_index=int(ts_ms / 40), ts_ms=ts_ms,
                     wall_ts_s=1.7e9 + ts_ms / 1000, bbox_xyxy=(10, 10, 40, 40),
                     face_size_px=30.0, quality=0.5, emotion=emo, first_seen_ts_ms=0.0,
                     last_seen_ts_ms=ts_ms)


def replay_script(n_steps: int) -> list[FaceEvent]:
    """Two cameras, three tracks each, fear rising on some tracks: events and alerts."""
    script = []
    for step in range(n_steps):
        ts = step * 200.0
        for camera in ("cam1", "cam2"):
            for track in (1, 2, 3):
                fear = 0.9 if (track != 3 and (step // 20) % 2 == 1) else 0.1
                script.append(face(camera, track, ts, fear))
    return script


def redis_cfg(server: EmbeddedRedis, **overrides: object) -> RedisConfig:
    values: dict[str, object] = {"url": server.url, "publish_batch_size": 32,
                                 "connect_timeout_s": 1.0, "socket_timeout_s": 2.0,
                                 "reconnect": {"initial_delay_s": 0.5, "max_delay_s": 2.0}}
    values.update(overrides)
    return RedisConfig.model_validate(values)


def read_all(client: redis.Redis, streams: list[str]) -> list[FaceTrackEventV1 | AlertV1]:
    out = []
    for stream in streams:
        out += [from_fields(fields) for _, fields in client.xrange(stream)]
    return out


def test_events_and_alerts_land_in_their_streams(redis_server, redis_client,
                                                 tmp_path: Path) -> None:
    engine = AlertEngine(AlertsConfig(rules=[AlertRuleConfig(
        id="fear", emotions=["fear"], min_duration_s=1.0, severity="high")]),
        SmoothingConfig(), "st1", class_names=CLASSES)
    publisher = EventPublisher(redis_cfg(redis_server), SpoolConfig(dir=tmp_path / "spool"),
                               "st1")
    publisher.start()
    produced = {"event": [], "alert": []}
    for event in replay_script(60):
        smoothed, alerts = engine.observe(event)
        produced["event"].append(publisher.publish_event(event, smoothed))
        produced["alert"] += [publisher.publish_alert(a) for a in alerts]
    publisher.stop()
    cam1 = read_all(redis_client, [events_stream("cctv", "st1", "cam1")])
    alerts = read_all(redis_client, [alerts_stream("cctv", "st1")])
    assert len(cam1) == 180 and all(m.camera_id == "cam1" for m in cam1)
    assert [m.msg_id for m in alerts] == produced["alert"] and len(alerts) == 4
    assert {a.camera_id for a in alerts} == {"cam1", "cam2"}
    assert all(a.severity == "high" and a.rule_id == "fear" for a in alerts)
    stats = publisher.stats()
    assert stats.published_events == 360 and stats.published_alerts == 4
    assert stats.spooled == 0 and stats.redis_up


def test_maxlen_and_age_retention(redis_server, redis_client, tmp_path: Path) -> None:
    redis_client.config_set("stream-node-max-entries", 10)  # lets ~ trim at small sizes
    cfg = redis_cfg(redis_server, events_maxlen=100, events_max_age_s=0.2)
    publisher = EventPublisher(cfg, SpoolConfig(dir=tmp_path / "spool"), "st1")
    publisher.start()
    smoothed = AlertEngine(AlertsConfig(), SmoothingConfig(), "st1").observe(
        face("cam1", 1, 0, 0.1))[0]
    for i in range(500):
        publisher.publish_event(face("cam1", 1, i, 0.1), smoothed)
    publisher.flush()
    stream = events_stream("cctv", "st1", "cam1")
    assert 100 <= redis_client.xlen(stream) <= 120
    time.sleep(0.3)  # let every entry become older than events_max_age_s
    publisher.trim()  # age trimming rides on the next XADD (MINID ~): no XTRIM right needed
    assert redis_client.xlen(stream) >= 100
    publisher.publish_event(face("cam1", 1, 500, 0.1), smoothed)
    publisher.flush()
    assert redis_client.xlen(stream) < 10
    assert publisher.stats().trims == 1  # the write after trim(); the next in trim_interval_s
    publisher.stop()


def test_outage_during_replay_loses_nothing(redis_server, redis_client, tmp_path: Path) -> None:
    clock = FakeClock()
    engine = AlertEngine(AlertsConfig(rules=[AlertRuleConfig(
        id="fear", emotions=["fear"], min_duration_s=1.0, cooldown_s=0.0)]),
        SmoothingConfig(), "st1", class_names=CLASSES)
    publisher = EventPublisher(redis_cfg(redis_server), SpoolConfig(dir=tmp_path / "spool"),
                               "st1", clock=clock)
    publisher.start()
    produced: list[str] = []
    script = replay_script(150)
    outage = range(len(script) // 3, 2 * len(script) // 3)
    for i, event in enumerate(script):
        if i == outage.start:
            redis_server.stop()
        if i == outage.stop:
            redis_server.start()
            clock.now += 60  # past any backoff: the next flush retries
        smoothed, alerts = engine.observe(event)
        produced.append(publisher.publish_event(event, smoothed))
        produced += [publisher.publish_alert(a) for a in alerts]
        clock.now += 0.01
        publisher.poll()
    publisher.stop()
    stats = publisher.stats()
    streams = [events_stream("cctv", "st1", c) for c in ("cam1", "cam2")]
    received = read_all(redis_client, [*streams, alerts_stream("cctv", "st1")])
    unique = {m.msg_id for m in received}
    assert unique == set(produced)  # every event and alert, exactly once after de-dup
    duplicates = len(received) - len(unique)
    assert stats.spooled > 0 and stats.flushed_from_spool == stats.spooled
    assert stats.spool_depth == 0 and stats.dropped_events == stats.dropped_alerts == 0
    assert stats.published_events + stats.published_alerts == len(received)
    assert duplicates == len(received) - len(produced)
    assert stats.write_failures >= 1 and stats.redis_up
    # order per stream is kept across the outage
    cam1 = [m for m in received if isinstance(m, FaceTrackEventV1) and m.camera_id == "cam1"]
    assert [m.ts_ms for m in cam1] == sorted(m.ts_ms for m in cam1)


def test_rejected_writes_are_spooled_then_flushed(redis_server, redis_client,
                                                  tmp_path: Path) -> None:
    clock = FakeClock()
    publisher = EventPublisher(redis_cfg(redis_server), SpoolConfig(dir=tmp_path / "spool"),
                               "st1", clock=clock)
    publisher.start()
    smoothed = AlertEngine(AlertsConfig(), SmoothingConfig(), "st1").observe(
        face("cam1", 1, 0, 0.1))[0]
    redis_client.config_set("maxmemory-policy", "noeviction")
    redis_client.config_set("maxmemory", 1)  # every write is now refused with OOM
    ids = [publisher.publish_event(face("cam1", 1, i, 0.1), smoothed) for i in range(40)]
    publisher.flush()
    assert publisher.stats().spool_depth == 40 and not publisher.stats().redis_up
    redis_client.config_set("maxmemory", 0)
    clock.now += 60
    publisher.poll()
    received = read_all(redis_client, [events_stream("cctv", "st1", "cam1")])
    assert [m.msg_id for m in received] == ids
    assert publisher.stats().spool_depth == 0
    publisher.stop()


def test_full_spool_during_outage_drops_events_before_alerts(redis_server, redis_client,
                                                             tmp_path: Path) -> None:
    clock = FakeClock()
    publisher = EventPublisher(redis_cfg(redis_server, publish_batch_size=1),
                               SpoolConfig(dir=tmp_path / "spool", max_messages=20),
                               "st1", clock=clock)
    publisher.start()
    engine = AlertEngine(AlertsConfig(rules=[AlertRuleConfig(
        id="fear", emotions=["fear"], min_duration_s=0.0, cooldown_s=0.0)]),
        SmoothingConfig(half_life_s=0.001), "st1", class_names=CLASSES)
    redis_server.stop()
    alert_ids = []
    for i in range(60):  # every 4th observation is fearful on a new track: an alert
        fearful = i % 4 == 0
        smoothed, alerts = engine.observe(face("cam1", i if fearful else 1000, i * 100.0,
                                               0.9 if fearful else 0.1))
        publisher.publish_event(face("cam1", 1, i * 100.0, 0.1), smoothed)
        alert_ids += [publisher.publish_alert(a) for a in alerts]
    stats = publisher.stats()
    assert len(alert_ids) == 15 and stats.spool_depth == 20
    assert stats.dropped_alerts == 0 and stats.dropped_events == 75 - 20
    redis_server.start()
    clock.now += 60
    publisher.stop()
    received = read_all(redis_client, [alerts_stream("cctv", "st1")])
    assert [m.msg_id for m in received] == alert_ids  # every alert survived, in order


def test_spool_from_a_previous_run_is_sent_at_start(redis_server, redis_client,
                                                    tmp_path: Path) -> None:
    spool_cfg = SpoolConfig(dir=tmp_path / "spool")
    first = EventPublisher(redis_cfg(redis_server), spool_cfg, "st1")
    first.start()
    redis_server.stop()
    smoothed = AlertEngine(AlertsConfig(), SmoothingConfig(), "st1").observe(
        face("cam1", 1, 0, 0.1))[0]
    ids = [first.publish_event(face("cam1", 1, i, 0.1), smoothed) for i in range(10)]
    first.stop(drain_timeout_s=0.5)
    assert first.stats().spool_depth == 10
    redis_server.start()
    second = EventPublisher(redis_cfg(redis_server), spool_cfg, "st1")
    second.start()
    received = read_all(redis_client, [events_stream("cctv", "st1", "cam1")])
    assert [m.msg_id for m in received] == ids
    second.stop()


def test_bad_password_fails_at_start(redis_server, redis_client, tmp_path: Path) -> None:
    redis_client.config_set("requirepass", "right-password")
    cfg = redis_cfg(redis_server, credentials={"password_env": "TEST_REDIS_PW"})
    publisher = EventPublisher(cfg, SpoolConfig(dir=tmp_path / "spool"), "st1")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TEST_REDIS_PW", "wrong-password")
        with pytest.raises(SinkError, match="credentials") as info:
            publisher.start()
    assert "wrong-password" not in str(info.value)
    publisher.spool.close()


def test_unreachable_redis_at_start_spools(tmp_path: Path, redis_server) -> None:
    port = redis_server.port
    redis_server.stop()
    cfg = RedisConfig(url=f"redis://127.0.0.1:{port}/0", connect_timeout_s=0.5)
    publisher = EventPublisher(cfg, SpoolConfig(dir=tmp_path / "spool"), "st1")
    publisher.start()
    smoothed = AlertEngine(AlertsConfig(), SmoothingConfig(), "st1").observe(
        face("cam1", 1, 0, 0.1))[0]
    publisher.publish_event(face("cam1", 1, 0, 0.1), smoothed)
    publisher.flush()
    assert publisher.stats().spool_depth == 1 and not publisher.stats().redis_up
    publisher.stop(drain_timeout_s=0.1)
    assert json.loads(json.dumps(publisher.stats().__dict__))["spool_depth"] == 1
