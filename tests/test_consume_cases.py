"""The reference consumer when the stream changes under it, on a real redis-server: pending
entries trimmed away, a consumer group that vanished, an outage, a refusal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from pipeline.config import AlertsConfig, RedisConfig, SmoothingConfig, SpoolConfig
from pipeline.events import alert_message, to_fields
from pipeline.records import EmotionResult, FaceEvent
from pipeline.rules import AlertEngine
from pipeline.rules.alert import Alert, AlertTrack
from pipeline.sinks.embedded import EmbeddedRedis
from pipeline.sinks.publisher import EventPublisher
from pipeline.sinks.streams import alerts_stream, dead_letter_stream, events_stream
from tests.helpers.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
ACL_FILE = REPO / "deploy" / "redis" / "users.acl"
EVENTS = events_stream("cctv", "st1", "clip")
ALERTS = alerts_stream("cctv", "st1")
CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


def write_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(f"""station: {{id: st1}}
cameras: [{{id: clip, url: {tmp_path / 'clip.mp4'}}}]
redis:
  url: '{url}'
  reconnect: {{initial_delay_s: 0.1, max_delay_s: 0.4}}
{extra}""")
    return path


def consume(config: Path, *args: str, env: dict[str, str] | None = None
            ) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.consume", "--config", str(config), "--group", "ops",
         "--format", "json", "--block-ms", "100", *args], cwd=REPO, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})


def finish(proc: subprocess.Popen[str]) -> tuple[int, list[str], str]:
    out, err = proc.communicate(timeout=90)
    ids = [json.loads(line)["msg_id"] for line in out.splitlines() if line.strip()]
    return proc.returncode, ids, err


def publish_events(url: str, tmp_path: Path, n: int) -> list[str]:
    """``n`` face-track events on camera 'clip' through the real publisher."""
    publisher = EventPublisher(RedisConfig(url=url), SpoolConfig(dir=tmp_path / "spool"), "st1")
    publisher.start()
    engine = AlertEngine(AlertsConfig(), SmoothingConfig(), "st1", class_names=CLASSES)
    ids = []
    for i in range(n):
        emotion = EmotionResult(CLASSES, (0.3, 0.4, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05),
                                sr_applied=False)
        event = FaceEvent(camera_id="clip", track_id=i % 5, frame_index=i, ts_ms=i * 40.0,
                          wall_ts_s=1.7e9 + i, bbox_xyxy=(10, 10, 40, 40), face_size_px=30.0,
                          quality=0.5, emotion=emotion, first_seen_ts_ms=0.0,
                          last_seen_ts_ms=i * 40.0)
        ids.append(publisher.publish_event(event, engine.observe(event)[0]))
    publisher.stop()
    assert publisher.stats().published_events == n
    return ids


def publish_alerts(client: redis.Redis | redis.client.Pipeline, start: int,
                   n: int) -> list[str]:
    ids = []
    for i in range(start, start + n):
        alert = Alert(station_id="st1", camera_id="clip", rule_id="fear", severity="high",
                      emotions=("fear",), threshold=0.6, ts_ms=i * 100.0, wall_ts_s=1.7e9 + i,
                      duration_ms=2000.0, sr_applied=False,
                      tracks=(AlertTrack(i, 0.0, i * 100.0, (1.0, 2.0, 3.0, 4.0), 0.8, 0.7,
                                         0.0),))
        client.xadd(ALERTS, to_fields(alert_message(alert)))
        ids.append(alert.msg_id)
    return ids


def group_joined(client: redis.Redis, stream: str) -> bool:
    try:
        return bool(client.xinfo_consumers(stream, "ops"))
    except redis.ResponseError:
        return False


def test_case_pending_entries_trimmed_before_the_consumer_returns(redis_server, redis_client,
                                                                  tmp_path: Path) -> None:
    """Field case 3: read 42, ack 1, retention trims the stream, the consumer comes back.
    The 41 trimmed pending entries (redis-py gives {} for their fields) are acknowledged and
    counted as lost, never dead-lettered."""
    produced = publish_events(redis_server.url, tmp_path, 42)
    config = write_config(tmp_path, redis_server.url)
    code, ids, err = finish(consume(config, "--streams", "events", "--consumer", "a",
                                    "--max-messages", "1"))
    assert (code, ids) == (0, produced[:1]), err
    assert redis_client.xpending(EVENTS, "ops")["pending"] == 41
    redis_client.xtrim(EVENTS, maxlen=0)  # retention (an operator's XTRIM, an age limit)
    assert redis_client.xreadgroup("ops", "a", {EVENTS: "0"})[0][1][0][1] == {}
    code, ids, err = finish(consume(config, "--streams", "events", "--consumer", "a",
                                    "--idle-exit-s", "1"))
    assert code == 3, err
    assert ids == []
    assert (f"41 pending entries of {EVENTS} were trimmed before they were acknowledged: lost"
            in err)
    assert "41 lost (trimmed before acknowledged)" in err and "0 dead-lettered" in err
    assert "dead-lettered " not in err and "unknown entry type" not in err
    assert redis_client.exists(dead_letter_stream("cctv", "st1")) == 0
    assert redis_client.xpending(EVENTS, "ops")["pending"] == 0


def test_trimmed_entries_reclaimed_from_another_consumer_are_lost_not_dead(
        redis_server, redis_client, tmp_path: Path) -> None:
    publish_events(redis_server.url, tmp_path, 12)
    config = write_config(tmp_path, redis_server.url)
    code, _, err = finish(consume(config, "--streams", "events", "--consumer", "a",
                                  "--max-messages", "2"))
    assert code == 0 and redis_client.xpending(EVENTS, "ops")["pending"] == 10, err
    redis_client.xtrim(EVENTS, maxlen=0)
    time.sleep(0.05)
    code, ids, err = finish(consume(config, "--streams", "events", "--consumer", "b",
                                    "--claim-idle-ms", "1", "--idle-exit-s", "1"))
    assert (code, ids) == (3, []), err
    assert "10 lost (trimmed before acknowledged)" in err
    assert redis_client.exists(dead_letter_stream("cctv", "st1")) == 0
    assert redis_client.xpending(EVENTS, "ops")["pending"] == 0


def test_vanished_group_is_recreated_and_what_may_be_missing_is_said(
        redis_server, redis_client, tmp_path: Path) -> None:
    config = write_config(tmp_path, redis_server.url)
    first = publish_alerts(redis_client, 0, 3)
    proc = consume(config, "--consumer", "a", "--idle-exit-s", "2")
    wait_for(lambda: group_joined(redis_client, ALERTS)
             and redis_client.xpending(ALERTS, "ops")["pending"] == 0
             and redis_client.xinfo_groups(ALERTS)[0]["entries-read"] == 3)
    last_read = redis_client.xrevrange(ALERTS, count=1)[0][0].decode()
    # in one transaction, so the consumer cannot read in between: the stream vanishes (as
    # in an eviction or a restart without data), two alerts are written and vanish again
    transaction = redis_client.pipeline(transaction=True)
    transaction.delete(ALERTS)
    lost = publish_alerts(transaction, 3, 2)
    transaction.delete(ALERTS)
    transaction.execute()
    wait_for(lambda: group_joined(redis_client, ALERTS))  # it re-created group and stream
    after = publish_alerts(redis_client, 5, 3)
    code, ids, err = finish(proc)
    assert code == 3, err
    assert ids == first + after and not set(lost) & set(ids)
    assert "consumer group ops on cctv:st1:alerts had vanished" in err
    assert f"re-created it from 0; entries added after {last_read} (the last this consumer " \
           f"read)" in err
    assert "1 groups re-created" in err


def test_outage_reconnects_with_backoff_instead_of_exiting(redis_server: EmbeddedRedis,
                                                           redis_client, tmp_path: Path) -> None:
    config = write_config(tmp_path, redis_server.url)
    before = publish_alerts(redis_client, 0, 2)
    proc = consume(config, "--consumer", "a", "--idle-exit-s", "4")
    wait_for(lambda: group_joined(redis_client, ALERTS)
             and redis_client.xinfo_groups(ALERTS)[0]["entries-read"] == 2
             and redis_client.xpending(ALERTS, "ops")["pending"] == 0)
    redis_server.stop()  # clean shutdown: the AOF keeps the stream and the group
    time.sleep(1.5)
    redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    after = publish_alerts(client, 2, 3)
    code, ids, err = finish(proc)
    assert code == 0, err
    assert ids == before + after
    assert "redis unavailable (" in err and "reconnects in" in err
    assert "redis reachable again after" in err and "1 reconnects" in err
    client.close()


def test_gives_up_with_exit_1_when_redis_stays_away(redis_server: EmbeddedRedis,
                                                    redis_client, tmp_path: Path) -> None:
    config = write_config(tmp_path, redis_server.url)
    publish_alerts(redis_client, 0, 1)
    proc = consume(config, "--consumer", "a", "--idle-exit-s", "1.5")
    wait_for(lambda: group_joined(redis_client, ALERTS)
             and redis_client.xpending(ALERTS, "ops")["pending"] == 0)
    redis_server.stop()
    code, ids, err = finish(proc)
    assert (code, len(ids)) == (1, 1), err
    assert "consumer a gives up" in err and "Traceback" not in err


def test_refusals_exit_2_at_start_and_1_mid_run(redis_server, redis_client,
                                                tmp_path: Path) -> None:
    rules = next(line.split()[2:] for line in ACL_FILE.read_text().splitlines()
                 if line.startswith("user cctv-consumer "))
    redis_client.execute_command("ACL", "SETUSER", "cctv-consumer", *rules)
    config = write_config(tmp_path, redis_server.url, "  consumer_credentials: "
                          "{username_env: C_USER, password_env: C_PW}\n")
    env = {"C_USER": "cctv-consumer", "C_PW": "wrong-secret-pw"}
    code, _, err = finish(consume(config, "--consumer", "a", "--idle-exit-s", "1", env=env))
    assert code == 2, err
    assert "refused the credentials of user 'cctv-consumer'" in err
    assert "wrong-secret-pw" not in err
    env["C_PW"] = "change-me-consumer"
    publish_alerts(redis_client, 0, 1)
    proc = consume(config, "--consumer", "a", "--idle-exit-s", "5", env=env)
    wait_for(lambda: group_joined(redis_client, ALERTS)
             and redis_client.xpending(ALERTS, "ops")["pending"] == 0)
    redis_client.execute_command("ACL", "SETUSER", "cctv-consumer", "resetkeys", "~other:*")
    code, ids, err = finish(proc)
    assert (code, len(ids)) == (1, 1), err
    assert "NOPERM" in err and "the ACL refuses user 'cctv-consumer'" in err
