"""The embedded redis-server: loopback port, persistence across restart, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis

from pipeline.config import RedisConfig
from pipeline.errors import SinkError
from pipeline.sinks.embedded import EmbeddedRedis, embedded_url, find_redis_server


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); treat it as gone
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


@pytest.mark.parametrize("persistence", ["aof", "rdb"])
def test_restart_keeps_port_and_data(tmp_path: Path, persistence: str) -> None:
    server = EmbeddedRedis(tmp_path / "data", persistence=persistence)
    with server:
        port = server.port
        assert server.url == f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(server.url)
        client.xadd("s", {"k": "v"})
        client.close()
    assert not server.running
    server.start()
    try:
        assert server.port == port
        client = redis.Redis.from_url(server.url)
        assert client.xlen("s") == 1
        client.close()
    finally:
        server.stop()
    expected = "appendonly" if persistence == "aof" else "dump.rdb"
    assert any(expected in p.name for p in (tmp_path / "data").rglob("*"))


def test_from_config_and_embedded_url(tmp_path: Path) -> None:
    cfg = RedisConfig(embedded=True, data_dir=tmp_path / "r")
    with pytest.raises(SinkError, match="no running embedded"):
        embedded_url(cfg)
    with EmbeddedRedis.from_config(cfg) as server:
        assert embedded_url(cfg) == server.url
    with pytest.raises(SinkError):
        embedded_url(cfg)


def test_stop_on_exception_and_twice(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "d")
    with pytest.raises(RuntimeError), server:
        pid = server.pid
        raise RuntimeError("boom")
    assert pid is not None and not _alive(pid)
    server.stop()  # second stop is harmless


def test_missing_binary_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SinkError, match="not an executable"):
        find_redis_server(tmp_path / "nope")


def test_no_orphan_when_parent_is_killed(tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from pipeline.sinks.embedded import EmbeddedRedis
        server = EmbeddedRedis(Path({str(tmp_path / 'orphan')!r}))
        server.start()
        print(server.pid, flush=True)
        time.sleep(60)
    """)
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    child_pid = int(parent.stdout.readline())
    assert _alive(child_pid)
    parent.send_signal(signal.SIGKILL)
    parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid)


def test_fixture_restart_for_outage_tests(redis_server, redis_client) -> None:
    redis_client.set("k", "1")
    port = redis_server.port
    redis_server.stop()
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, socket_connect_timeout=1).ping()
    redis_server.start()
    assert redis_server.port == port and redis_client.get("k") == b"1"
