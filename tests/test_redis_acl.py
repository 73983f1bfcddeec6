"""deploy/redis/users.acl on a real Redis >= 7 (selectors): least privilege per role."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from pipeline.config import CredentialsConfig, RedisConfig, SpoolConfig
from pipeline.events import alert_message, to_fields
from pipeline.rules.alert import Alert, AlertTrack
from pipeline.sinks.client import create_redis_client
from pipeline.sinks.publisher import EventPublisher
from pipeline.sinks.streams import alerts_stream, dead_letter_stream, events_stream

REPO = Path(__file__).resolve().parents[1]
ACL_FILE = REPO / "deploy" / "redis" / "users.acl"
# The example passwords whose hashes the shipped file holds (docs/events.md: change them).
ENV = {"PIPE_USER": "cctv-pipeline", "PIPE_PW": "change-me-pipeline",
       "CONS_USER": "cctv-consumer", "CONS_PW": "change-me-consumer"}
PIPELINE = CredentialsConfig(username_env="PIPE_USER", password_env="PIPE_PW")
CONSUMER = CredentialsConfig(username_env="CONS_USER", password_env="CONS_PW")


@pytest.fixture
def acl_server(redis_server_factory, redis_version):
    if redis_version < (7, 0, 0):
        pytest.skip(f"the ACL file uses selectors (Redis >= 7.0); this redis-server is "
                    f"{'.'.join(map(str, redis_version))} (apt-get install redis-server)")
    return redis_server_factory("acl", extra_args=["--aclfile", str(ACL_FILE)])


def alert() -> Alert:
    return Alert(station_id="st1", camera_id="cam1", rule_id="fear", severity="low",
                 emotions=("fear",), threshold=0.5, ts_ms=0.0, wall_ts_s=1.7e9,
                 duration_ms=0.0, sr_applied=False,
                 tracks=(AlertTrack(1, 0.0, 0.0, (0.0, 0.0, 1.0, 1.0), 0.9, 0.5, 0.0),))


def test_default_user_is_off(acl_server) -> None:
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        redis.Redis.from_url(acl_server.url).ping()


def test_pipeline_user_writes_its_streams_but_cannot_read_trim_or_delete(acl_server,
                                                                          tmp_path: Path) -> None:
    cfg = RedisConfig(url=acl_server.url, credentials=PIPELINE)
    client = create_redis_client(cfg, env=ENV)
    stream = events_stream("cctv", "st1", "cam1")
    for _ in range(3):
        client.xadd(stream, {"a": "b"}, maxlen=1000, approximate=True)
    # metadata only: length, existence, server INFO (run id, maxmemory-policy)
    assert client.xlen(stream) == 3 and client.exists(stream) == 1
    assert client.info("memory")["maxmemory_policy"] == "noeviction"
    for forbidden in (lambda: client.xrange(stream), lambda: client.xread({stream: "0"}),
                      lambda: client.xinfo_stream(stream),
                      lambda: client.get(stream), lambda: client.delete(stream),
                      lambda: client.unlink(stream),
                      lambda: client.xtrim(stream, maxlen=0),
                      lambda: client.xtrim(stream, minid="99999999999999-0"),
                      lambda: client.xdel(stream, "0-1"), lambda: client.flushall(),
                      lambda: client.expire(stream, 1), lambda: client.rename(stream, "cctv:x"),
                      lambda: client.xgroup_destroy(stream, "g"),
                      lambda: client.xadd("other:stream", {"a": "b"}),
                      lambda: client.config_get("*")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()
    assert client.xlen(stream) == 3  # nothing above removed an entry
    # what an ACL cannot forbid (it allows commands, not arguments), as docs/events.md says
    client.xadd(stream, {"a": "b"}, maxlen=0, approximate=False)
    assert client.xlen(stream) == 0
    # the real publisher works end to end with only these rights (age trimming included:
    # it rides on XADD ... MINID ~)
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ENV.items():
            mp.setenv(key, value)
        publisher = EventPublisher(cfg, SpoolConfig(dir=tmp_path / "spool"), "st1")
        publisher.start()
        publisher.publish_alert(alert())
        publisher.trim()
        publisher.publish_alert(alert())
        publisher.stop()
    stats = publisher.stats()
    assert stats.published_alerts == 2 and stats.spool_depth == 0 and stats.trims == 1
    assert stats.events_not_delivered == stats.alerts_not_delivered == 0
    client.close()


def test_consumer_user_reads_and_acks_but_cannot_write(acl_server, tmp_path: Path) -> None:
    cfg = RedisConfig(url=acl_server.url, credentials=PIPELINE, consumer_credentials=CONSUMER)
    writer = create_redis_client(cfg, env=ENV)
    stream = alerts_stream("cctv", "st1")
    writer.xadd(stream, to_fields(alert_message(alert())))
    writer.xadd(stream, {"type": "alert", "data": "garbage"})
    reader = create_redis_client(cfg, credentials=CONSUMER, env=ENV)
    for forbidden in (lambda: reader.xadd(stream, {"a": "b"}), lambda: reader.delete(stream),
                      lambda: reader.xdel(stream, "0-1"),
                      lambda: reader.xtrim(stream, maxlen=0),
                      lambda: reader.set("cctv:x", "1"),
                      lambda: reader.xadd(events_stream("cctv", "st1", "cam1"), {"a": "b"})):
        with pytest.raises(redis.exceptions.NoPermissionError):
            forbidden()
    config = tmp_path / "station.yaml"
    config.write_text(
        f"station: {{id: st1}}\nredis:\n  url: '{acl_server.url}'\n"
        "  consumer_credentials: {username_env: CONS_USER, password_env: CONS_PW}\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.consume", "--config", str(config), "--group", "ops",
         "--idle-exit-s", "1", "--block-ms", "200", "--format", "json"],
        cwd=REPO, env={**os.environ, **ENV}, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 1
    assert reader.xinfo_stream(dead_letter_stream("cctv", "st1"))["length"] == 1
    assert "change-me" not in proc.stderr
    reader.close()
    writer.close()
