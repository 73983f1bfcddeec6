"""The reference consumer CLI against a real redis-server: groups, reclaim, dead letters."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from pipeline.events import alert_message, to_fields
from pipeline.rules.alert import Alert, AlertTrack
from pipeline.sinks.streams import alerts_stream, dead_letter_stream
from tests.helpers.waiting import wait_for

REPO = Path(__file__).resolve().parents[1]
STREAM = alerts_stream("cctv", "st1")


def write_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "station.yaml"
    path.write_text(f"station: {{id: st1}}\nredis: {{url: '{url}'}}\n")
    return path


def publish_alerts(client: redis.Redis, n: int) -> list[str]:
    pipe = client.pipeline(transaction=False)
    ids = []
    for i in range(n):
        alert = Alert(station_id="st1", camera_id=f"cam{i % 3}", rule_id="fear",
                      severity="high", emotions=("fear",), threshold=0.6, ts_ms=i * 100.0,
                      wall_ts_s=1.7e9 + i, duration_ms=2000.0, sr_applied=False,
                      tracks=(AlertTrack(i, 0.0, i * 100.0, (1.0, 2.0, 3.0, 4.0), 0.8, 0.7,
                                         0.0),))
        ids.append(alert.msg_id)
        pipe.xadd(STREAM, to_fields(alert_message(alert)))
    pipe.execute()
    return ids


def consume(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.consume", "--config", str(config), "--group", "ops",
         *args], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


def json_ids(stdout: str) -> list[str]:
    return [json.loads(line)["msg_id"] for line in stdout.splitlines() if line.strip()]


def pending(client: redis.Redis) -> int:
    try:
        return int(client.xpending(STREAM, "ops")["pending"])
    except redis.ResponseError:  # the group does not exist yet
        return 0


def last_delivered(client: redis.Redis) -> bytes | None:
    groups = client.xinfo_groups(STREAM)
    return groups[0]["last-delivered-id"] if groups else None


def test_two_consumers_share_the_work(redis_server, redis_client, tmp_path: Path) -> None:
    config = write_config(tmp_path, redis_server.url)
    procs = [consume(config, "--consumer", name, "--format", "json", "--batch", "5",
                     "--block-ms", "200", "--idle-exit-s", "2") for name in ("a", "b")]

    def both_joined() -> bool:
        try:
            return len(redis_client.xinfo_consumers(STREAM, "ops")) == 2
        except redis.ResponseError:
            return False

    wait_for(both_joined)
    produced = publish_alerts(redis_client, 400)
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    got_a, got_b = json_ids(outs[0]), json_ids(outs[1])
    assert got_a and got_b  # both did some of the work
    assert sorted(got_a + got_b) == sorted(produced)  # each alert exactly once
    assert redis_client.xpending(STREAM, "ops")["pending"] == 0


def test_killed_consumer_pending_entries_are_reclaimed(redis_server, redis_client,
                                                       tmp_path: Path) -> None:
    config = write_config(tmp_path, redis_server.url)
    produced = publish_alerts(redis_client, 2000)
    # 'a' reads 1000 entries in one batch, then blocks writing to a pipe we do not read
    victim = consume(config, "--consumer", "a", "--format", "json", "--batch", "1000")
    thousandth = redis_client.xrange(STREAM, count=1000)[-1][0]
    wait_for(lambda: last_delivered(redis_client) == thousandth)
    history = [pending(redis_client)]

    def blocked_on_output() -> bool:  # pending count stopped moving: stuck on a full pipe
        time.sleep(0.2)
        history.append(pending(redis_client))
        return history[-1] == history[-2] > 0

    wait_for(blocked_on_output)
    victim.send_signal(signal.SIGKILL)
    out_a = victim.communicate(timeout=30)[0]
    pending_a = redis_client.xpending(STREAM, "ops")["pending"]
    assert pending_a > 0  # killed mid-batch
    rescuer = consume(config, "--consumer", "b", "--format", "json", "--claim-idle-ms", "100",
                      "--block-ms", "200", "--idle-exit-s", "2")
    out_b, err_b = rescuer.communicate(timeout=120)
    assert rescuer.returncode == 0, err_b
    seen_a = json_ids(out_a.rsplit("\n", 1)[0])  # the last line may be cut by the kill
    seen_b = json_ids(out_b)
    assert set(seen_a) | set(seen_b) == set(produced)
    assert len(set(seen_b)) == len(seen_b)
    assert "reclaimed" in err_b
    assert redis_client.xpending(STREAM, "ops")["pending"] == 0


def test_malformed_entry_goes_to_dead_letter(redis_server, redis_client, tmp_path: Path) -> None:
    config = write_config(tmp_path, redis_server.url)
    produced = publish_alerts(redis_client, 2)
    bad_id = redis_client.xadd(STREAM, {"type": "alert", "msg_id": "m" * 32,
                                        "data": "{\"schema\": \"cctv.alert.v1\"}"})
    produced += publish_alerts(redis_client, 1)
    proc = consume(config, "--consumer", "a", "--format", "json", "--max-messages", "3")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert json_ids(out) == produced
    dead = redis_client.xrange(dead_letter_stream("cctv", "st1"))
    assert len(dead) == 1
    fields = {k.decode(): v.decode() for k, v in dead[0][1].items()}
    assert fields["source_id"] == bad_id.decode() and fields["source_stream"] == STREAM
    assert "alert data invalid" in fields["error"] and fields["field:msg_id"] == "m" * 32
    assert redis_client.xpending(STREAM, "ops")["pending"] == 0


def test_readable_lines_and_clean_sigterm(redis_server, redis_client, tmp_path: Path) -> None:
    config = write_config(tmp_path, redis_server.url)
    publish_alerts(redis_client, 3)
    proc = consume(config, "--consumer", "a", "--block-ms", "100")
    # read the three lines through the same buffered reader: communicate() reads the raw
    # pipe and would miss lines that readline() had already buffered
    lines = [proc.stdout.readline() for _ in range(3)]
    assert " ALERT HIGH st1/cam0 rule=fear: fear >= 0.60 for 2.0 s on track 0" in lines[0]
    wait_for(lambda: last_delivered(redis_client) not in (None, b"0-0")
             and pending(redis_client) == 0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert all(" ALERT HIGH " in line for line in lines) and out == ""
    assert "3 handled" in err


def test_bad_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("redis:\n  url: http://nope\n")
    proc = consume(config)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "redis.url" in err
