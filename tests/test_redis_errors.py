"""Permanent vs transient Redis errors on real servers: the start-up check fails fast with a
message naming the cause, only transient errors are spooled, counts stay truthful."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from redis._parsers.base import BaseParser
from redis.backoff import NoBackoff
from redis.retry import Retry

from pipeline.config import RedisConfig, SpoolConfig
from pipeline.errors import RedisRefusedError
from pipeline.events import alert_message, to_fields
from pipeline.rules.alert import Alert, AlertTrack
from pipeline.sinks.embedded import EmbeddedRedis, ServerTls, free_port
from pipeline.sinks.faults import classify_redis_error
from pipeline.sinks.publisher import EventPublisher
from pipeline.sinks.streams import alerts_stream
from tests.helpers.redis_server import make_test_ca, redis_binary_supports_tls

REPO = Path(__file__).resolve().parents[1]
ACL_FILE = REPO / "deploy" / "redis" / "users.acl"
CLIP = Path("/work/shared/cases/redis-stream-cases/clip.mp4")
ENV = {"PIPE_USER": "cctv-pipeline", "PIPE_PW": "change-me-pipeline"}
PIPELINE_CREDENTIALS = {"username_env": "PIPE_USER", "password_env": "PIPE_PW"}


def shipped_acl_rules(user: str) -> list[str]:
    """The rule tokens of ``user`` in deploy/redis/users.acl."""
    for line in ACL_FILE.read_text().splitlines():
        if line.startswith(f"user {user} "):
            return line.split()[2:]
    raise AssertionError(f"{user} not in {ACL_FILE}")


def alert(i: int = 0) -> Alert:
    return Alert(station_id="st1", camera_id="cam1", rule_id="fear", severity="low",
                 emotions=("fear",), threshold=0.5, ts_ms=float(i), wall_ts_s=1.7e9 + i,
                 duration_ms=0.0, sr_applied=False,
                 tracks=(AlertTrack(i, 0.0, 0.0, (0.0, 0.0, 1.0, 1.0), 0.9, 0.5, 0.0),))


def publisher_for(url: str, tmp_path: Path, **redis: object) -> EventPublisher:
    cfg = RedisConfig.model_validate({"url": url, "connect_timeout_s": 1.0,
                                      "socket_timeout_s": 2.0,
                                      "reconnect": {"initial_delay_s": 0.05,
                                                    "max_delay_s": 0.2}, **redis})
    return EventPublisher(cfg, SpoolConfig(dir=tmp_path / "spool"), "st1")


@pytest.fixture
def acl_server(redis_server_factory, redis_version) -> EmbeddedRedis:
    if redis_version < (7, 0, 0):
        pytest.skip("the shipped ACL file uses selectors (Redis >= 7.0)")
    return redis_server_factory("acl", extra_args=["--aclfile", str(ACL_FILE)])


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)


# -- classification ----------------------------------------------------------------------

@pytest.mark.parametrize(("reply", "transient", "code"), [
    ("LOADING Redis is loading the dataset in memory", True, "LOADING"),
    ("BUSY Redis is busy running a script. You can only call SCRIPT KILL", True, "BUSY"),
    ("OOM command not allowed when used memory > 'maxmemory'.", True, "OOM"),
    ("READONLY You can't write against a read only replica.", True, "READONLY"),
    ("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
     True, "MASTERDOWN"),
    ("TRYAGAIN Multiple keys request during rehashing of slot", True, "TRYAGAIN"),
    ("NOREPLICAS Not enough good replicas to write.", True, "NOREPLICAS"),
    ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to persist",
     True, "MISCONF"),
    ("NOPERM this user has no permissions to access one of the keys", False, "NOPERM"),
    ("WRONGPASS invalid username-password pair or user is disabled.", False, "WRONGPASS"),
    ("NOAUTH Authentication required.", False, "NOAUTH"),
    ("WRONGTYPE Operation against a key holding the wrong kind of value", False, "WRONGTYPE"),
    ("ERR syntax error", False, "ERR"),
    ("MOVED 3999 127.0.0.1:6381", False, "MOVED"),
])
def test_error_replies_as_redis_py_parses_them(reply: str, transient: bool, code: str) -> None:
    """redis-py strips the code of the replies it maps to a class (OOM, NOPERM, LOADING...):
    the class decides. The others keep their code as the first word."""
    err = BaseParser.parse_error(reply)
    fault = classify_redis_error(err)
    assert (fault.transient, fault.code) == (transient, code), (type(err), str(err))


def test_errors_from_real_servers_are_classified(redis_server_factory, acl_server,
                                                 tmp_path: Path) -> None:
    plain = redis_server_factory("plain")
    admin = redis.Redis.from_url(plain.url)
    faults = {}

    def fault_of(call) -> tuple[bool, str]:
        with pytest.raises(redis.RedisError) as info:
            call()
        fault = classify_redis_error(info.value)
        return fault.transient, fault.code

    pipeline_user = redis.Redis.from_url(acl_server.url, username=ENV["PIPE_USER"],
                                         password=ENV["PIPE_PW"])
    faults["noperm"] = fault_of(lambda: pipeline_user.xadd("other:stream", {"a": "b"}))
    faults["wrongpass"] = fault_of(lambda: redis.Redis.from_url(
        acl_server.url, username=ENV["PIPE_USER"], password="not-it").ping())
    faults["noauth"] = fault_of(lambda: redis.Redis.from_url(acl_server.url).ping())
    admin.set("cctv:st1:alerts", "a string")
    faults["wrongtype"] = fault_of(lambda: admin.xadd("cctv:st1:alerts", {"a": "b"}))
    admin.config_set("maxmemory-policy", "noeviction")
    admin.config_set("maxmemory", 1)
    faults["oom"] = fault_of(lambda: admin.xadd("cctv:x", {"a": "b"}))
    admin.config_set("maxmemory", 0)
    admin.replicaof("127.0.0.1", free_port())  # a failover in progress: a replica for now
    faults["readonly"] = fault_of(lambda: admin.xadd("cctv:x", {"a": "b"}))
    admin.replicaof("NO", "ONE")
    port = free_port()
    faults["refused"] = fault_of(lambda: redis.Redis(port=port, retry=Retry(NoBackoff(), 0)
                                                     ).ping())
    assert faults == {"noperm": (False, "NOPERM"), "wrongpass": (False, "WRONGPASS"),
                      "noauth": (False, "NOAUTH"), "wrongtype": (False, "WRONGTYPE"),
                      "oom": (True, "OOM"), "readonly": (True, "READONLY"),
                      "refused": (True, "CONNECTION")}
    admin.close()
    pipeline_user.close()


# -- start-up check ------------------------------------------------------------------------

def test_acl_refusing_the_keys_fails_start_naming_the_pattern(acl_server, env,
                                                              tmp_path: Path) -> None:
    publisher = publisher_for(acl_server.url, tmp_path, credentials=PIPELINE_CREDENTIALS,
                              stream_prefix="cctv-prod")
    with pytest.raises(RedisRefusedError) as info:
        publisher.start()
    message = str(info.value)
    assert "'cctv-pipeline' may not XADD to cctv-prod:st1:alerts" in message
    assert "keys matching cctv-prod:st1:*" in message and "NOPERM" in message
    assert ENV["PIPE_PW"] not in message
    # the probe wrote nothing, with the right prefix either
    ok = publisher_for(acl_server.url, tmp_path, credentials=PIPELINE_CREDENTIALS)
    ok.start()
    assert ok.probe_streams() == ["cctv:st1:alerts", "cctv:st1:events:probe"]
    ok.stop()
    assert ok.stats().published_alerts == 0 and ok.stats().rejected_alerts == 0


def test_bad_credentials_and_missing_credentials_fail_start(acl_server, tmp_path: Path,
                                                            monkeypatch) -> None:
    monkeypatch.setenv("PIPE_USER", "cctv-pipeline")
    monkeypatch.setenv("PIPE_PW", "wrong-secret-pw")
    with pytest.raises(RedisRefusedError, match=r"refused the credentials of user "
                                                r"'cctv-pipeline'.*WRONGPASS") as info:
        publisher_for(acl_server.url, tmp_path, credentials=PIPELINE_CREDENTIALS).start()
    assert "wrong-secret-pw" not in str(info.value)
    with pytest.raises(RedisRefusedError, match=r"requires authentication.*NOAUTH.*set "
                                                r"redis\.credentials"):
        publisher_for(acl_server.url, tmp_path).start()


@pytest.fixture
def tls_files(redis_binary: Path, tmp_path: Path) -> dict[str, Path]:
    if not redis_binary_supports_tls(redis_binary):
        pytest.skip(f"{redis_binary} was built without TLS")
    return make_test_ca(tmp_path / "pki")


def test_tls_certificate_and_scheme_mistakes_fail_start(redis_server_factory, tls_files,
                                                        tmp_path: Path) -> None:
    tls = redis_server_factory("tls", tls=ServerTls(tls_files["cert"], tls_files["key"],
                                                    tls_files["ca"]))
    plain = redis_server_factory("plain")
    other_ca = make_test_ca(tmp_path / "other-pki")["ca"]
    with pytest.raises(RedisRefusedError, match=r"certificate does not verify.*"
                                                r"check redis\.tls\.ca_file"):
        publisher_for(tls.url, tmp_path, tls={"ca_file": other_ca}).start()
    with pytest.raises(RedisRefusedError,
                       match=f"127.0.0.1:{tls.port} speaks TLS: use rediss://"):
        publisher_for(f"redis://127.0.0.1:{tls.port}/0", tmp_path).start()
    with pytest.raises(RedisRefusedError,
                       match=f"127.0.0.1:{plain.port} speaks plain Redis, not TLS"):
        publisher_for(f"rediss://127.0.0.1:{plain.port}/0", tmp_path,
                      tls={"ca_file": tls_files["ca"]}).start()


def test_unreachable_redis_at_start_is_transient(tmp_path: Path) -> None:
    publisher = publisher_for(f"redis://127.0.0.1:{free_port()}/0", tmp_path)
    publisher.start()  # no exception: entries wait in the spool
    publisher.publish_alert(alert())
    assert not publisher.stats().redis_up and publisher.stats().spool_depth == 1
    publisher.stop(drain_timeout_s=0.3)
    stats = publisher.stats()
    assert stats.alerts_not_delivered == 1 and stats.published_alerts == 0


def _replay(config: Path, tmp_path: Path, env: dict[str, str]) -> tuple[subprocess.
                                                                      CompletedProcess, dict]:
    summary = tmp_path / "summary.json"
    summary.unlink(missing_ok=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.replay", "--config", str(config), "--input", str(CLIP),
         "--summary-json", str(summary)], cwd=REPO, env={**os.environ, **env},
        capture_output=True, text=True, timeout=300)
    return proc, (json.loads(summary.read_text()) if summary.exists() else {})


@pytest.mark.skipif(not CLIP.is_file(), reason=f"{CLIP} not found")
def test_case_acl_refuses_the_keys_replay_exits_2(acl_server, tmp_path: Path) -> None:
    """Field case 1: the shipped ACL allows cctv:*, the config says cctv-prod."""
    config = tmp_path / "station.yaml"
    base = (f"station: {{id: st1}}\nspool: {{dir: {tmp_path / 'spool'}}}\nredis:\n"
            f"  url: '{acl_server.url}'\n"
            f"  credentials: {{username_env: PIPE_USER, password_env: PIPE_PW}}\n")
    config.write_text(base + "  stream_prefix: cctv-prod\n")
    proc, summary = _replay(config, tmp_path, ENV)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert summary == {} and "events published" not in proc.stdout
    assert ("redis user 'cctv-pipeline' may not XADD to cctv-prod:st1:alerts" in proc.stderr
            and "keys matching cctv-prod:st1:*" in proc.stderr)
    assert "sent next run" not in proc.stderr and "spool" not in proc.stderr
    assert ENV["PIPE_PW"] not in proc.stderr
    # the same run with the prefix the ACL allows: every event acknowledged, exit 0
    config.write_text(base)
    proc, summary = _replay(config, tmp_path, ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert summary["events_published"] == 42
    assert summary["events_not_delivered"] == summary["alerts_not_delivered"] == 0
    assert summary["redis_entries_lost"] == 0
    assert "| events not delivered             | 0 |" in proc.stdout


# -- during a run --------------------------------------------------------------------------

def started_as_pipeline_user(redis_server, tmp_path: Path):
    """An admin client and a started publisher logged in as the shipped ACL's pipeline user."""
    admin = redis.Redis.from_url(redis_server.url)
    admin.execute_command("ACL", "SETUSER", "cctv-pipeline",
                          *shipped_acl_rules("cctv-pipeline"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in ENV.items():
            mp.setenv(key, value)
        publisher = publisher_for(redis_server.url, tmp_path, credentials=PIPELINE_CREDENTIALS)
        publisher.start()
    return admin, publisher


def test_permanent_rejection_mid_run_is_counted_not_spooled(redis_server, tmp_path: Path,
                                                            caplog) -> None:
    admin, publisher = started_as_pipeline_user(redis_server, tmp_path)
    ids = [publisher.publish_alert(alert(i)) for i in range(3)]
    # an operator narrows the ACL while the pipeline runs
    admin.execute_command("ACL", "SETUSER", "cctv-pipeline", "resetkeys", "~cctv:other:*")
    with caplog.at_level(logging.ERROR, logger="pipeline.sinks.publisher"):
        for i in range(3, 8):
            publisher.publish_alert(alert(i))
        publisher.stop()
    stats = publisher.stats()
    assert (stats.published_alerts, stats.rejected_alerts, stats.alerts_not_delivered,
            stats.spool_depth, stats.spooled) == (3, 5, 5, 0, 0)
    rejected = [r.getMessage() for r in caplog.records if "redis rejected" in r.getMessage()]
    assert len(rejected) == 5 and "NOPERM" in rejected[0] and "not spooled" in rejected[0]
    assert any("5 alerts were not delivered: 0 in the spool, 0 dropped (spool full), 5 "
               "rejected" in r.getMessage() for r in caplog.records)
    stored = [json.loads(f[b"data"])["msg_id"] for _, f in
              admin.xrange(alerts_stream("cctv", "st1"))]
    assert stored == ids
    admin.close()


def test_password_rotated_mid_run_keeps_entries_spooled_until_fixed(redis_server,
                                                                    tmp_path: Path,
                                                                    caplog) -> None:
    admin, publisher = started_as_pipeline_user(redis_server, tmp_path)
    publisher.publish_alert(alert(0))
    admin.execute_command("ACL", "SETUSER", "cctv-pipeline", "resetpass", ">rotated")
    admin.client_kill_filter(user="cctv-pipeline")
    with caplog.at_level(logging.ERROR, logger="pipeline.sinks.publisher"):
        publisher.publish_alert(alert(1))
    assert publisher.stats().spool_depth == 1 and not publisher.stats().redis_up
    assert any("redis refuses the pipeline (WRONGPASS" in r.getMessage()
               for r in caplog.records)
    admin.execute_command("ACL", "SETUSER", "cctv-pipeline", ">" + ENV["PIPE_PW"])
    publisher.stop(drain_timeout_s=0.2)  # permanent: no waiting, one more try
    stats = publisher.stats()
    assert (stats.published_alerts, stats.spool_depth, stats.alerts_not_delivered) == (2, 0, 0)
    admin.close()


def test_readonly_and_busy_are_transient_spooled_then_delivered(redis_server,
                                                                tmp_path: Path) -> None:
    admin = redis.Redis.from_url(redis_server.url, socket_timeout=30)
    publisher = publisher_for(redis_server.url, tmp_path)
    publisher.start()
    ids = [publisher.publish_alert(alert(0))]
    admin.replicaof("127.0.0.1", free_port())  # failover: this node is a replica for now
    ids.append(publisher.publish_alert(alert(1)))
    assert publisher.stats().spool_depth == 1 and not publisher.stats().redis_up
    admin.replicaof("NO", "ONE")
    time.sleep(0.3)  # past the backoff
    publisher.poll()
    assert publisher.stats().spool_depth == 0
    # BUSY: a script runs past busy-reply-threshold; other clients get BUSY until it ends
    admin.config_set("lua-time-limit", 50)
    script_errors: list[str] = []

    def endless_script() -> None:
        try:
            admin.eval("while true do end", 0)
        except redis.ResponseError as err:
            script_errors.append(str(err))

    script = threading.Thread(target=endless_script, daemon=True)
    script.start()
    busy = redis.Redis.from_url(redis_server.url)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            busy.ping()
        except redis.ResponseError as err:
            assert str(err).startswith("BUSY")
            break
        time.sleep(0.02)
    ids.append(publisher.publish_alert(alert(2)))
    assert publisher.stats().spool_depth == 1, "BUSY must be spooled"
    busy.script_kill()
    script.join(timeout=10)
    assert len(script_errors) == 1 and "killed" in script_errors[0].lower()
    time.sleep(0.3)
    publisher.poll()
    publisher.stop()
    stats = publisher.stats()
    assert (stats.published_alerts, stats.rejected_alerts, stats.spool_depth) == (3, 0, 0)
    stored = [json.loads(f[b"data"])["msg_id"] for _, f in
              busy.xrange(alerts_stream("cctv", "st1"))]
    assert stored == ids
    busy.close()
    admin.close()


def test_start_up_probe_writes_nothing(redis_server, tmp_path: Path) -> None:
    """The probe (XADD ... 0-0) leaves no key and no entry: only what was published."""
    publisher = publisher_for(redis_server.url, tmp_path)
    publisher.start()
    msg_id = publisher.publish_alert(alert(7))
    publisher.stop()
    client = redis.Redis.from_url(redis_server.url)
    entries = client.xrange(alerts_stream("cctv", "st1"))
    assert [f[b"msg_id"].decode() for _, f in entries] == [msg_id]
    assert {k.decode() for k in entries[0][1]} == set(to_fields(alert_message(alert(7))))
    assert client.keys("*") == [b"cctv:st1:alerts"]
    client.close()


@pytest.mark.skipif(not CLIP.is_file(), reason=f"{CLIP} not found")
def test_replay_with_redis_away_exits_3_then_the_next_run_delivers(redis_server_factory,
                                                                   tmp_path: Path) -> None:
    """An outage is transient: spooled, said in the summary and exit code, sent next run."""
    port = free_port()
    config = tmp_path / "station.yaml"
    config.write_text(f"""station: {{id: st1}}
redis: {{url: 'redis://127.0.0.1:{port}/0', connect_timeout_s: 0.5}}
spool: {{dir: {tmp_path / 'spool'}, drain_timeout_s: 0.5}}
""")
    proc, summary = _replay(config, tmp_path, {})
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert (summary["events_published"], summary["events_not_delivered"]) == (0, 42)
    assert "| events not delivered             | 42 |" in proc.stdout
    assert "42 events and 0 alerts were not delivered: 42 in the spool" in proc.stderr
    assert "42 entries stay in the spool" in proc.stderr
    server = redis_server_factory("later", port=port)
    proc, summary = _replay(config, tmp_path, {})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (summary["events_published"], summary["events_not_delivered"]) == (42, 0)
    assert "entries left by a previous run: 42 delivered, 0 rejected" in proc.stderr
    client = redis.Redis.from_url(server.url)
    assert client.xlen("cctv:st1:events:clip") == 84
    client.close()
