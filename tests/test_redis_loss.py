"""Loss that used to go unreported, on real servers: Redis restarted without (all of) its
data, or evicting the streams under an allkeys-* policy. Found, counted, logged, in metrics
and in the exit code; spooled entries are still delivered."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from prometheus_client import generate_latest

from pipeline.config import AlertsConfig, RedisConfig, SmoothingConfig, SpoolConfig, parse_config
from pipeline.errors import RedisRefusedError
from pipeline.publish import EventOutput
from pipeline.records import EmotionResult, FaceEvent
from pipeline.rules import AlertEngine
from pipeline.run import delivery_exit_code
from pipeline.runner import LiveRunner
from pipeline.sinks.embedded import EmbeddedRedis
from pipeline.sinks.publisher import EventPublisher
from pipeline.sinks.streams import events_stream

REPO = Path(__file__).resolve().parents[1]
CLIP = Path("/work/shared/cases/redis-stream-cases/clip.mp4")
CLIP_EVENTS = 42  # what clip.mp4 gives (docs: shared/cases/README.md)
CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")
needs_clip = pytest.mark.skipif(not CLIP.is_file(), reason=f"{CLIP} not found")


def face(camera: str, i: int) -> FaceEvent:
    emotion = EmotionResult(CLASSES, (0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1), sr_applied=False)
    return FaceEvent(camera_id=camera, track_id=i % 3, frame_index=i, ts_ms=i * 40.0,
                     wall_ts_s=1.7e9 + i, bbox_xyxy=(10, 10, 40, 40), face_size_px=30.0,
                     quality=0.5, emotion=emotion, first_seen_ts_ms=0.0, last_seen_ts_ms=i * 40.0)


class BackgroundAction:
    """Runs ``action`` once ``ready()`` holds, from a thread that stays alive until close():
    EmbeddedRedis ties a server's life to the thread that (re)started it."""

    def __init__(self, server: EmbeddedRedis) -> None:
        self.server = server
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    def run_when(self, ready: Callable[[], bool], action: Callable[[], None]) -> None:
        def body() -> None:
            try:
                deadline = time.monotonic() + 120
                while not ready():
                    if time.monotonic() > deadline:
                        raise TimeoutError("the trigger condition never came")
                    time.sleep(0.01)
                action()
            except BaseException as err:  # reported by close()
                self.error = err
            self._done.wait()

        self._thread = threading.Thread(target=body, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.server.stop()
        if self.error is not None:
            raise self.error


def xlen_or_zero(client: redis.Redis, stream: str) -> int:
    try:
        return int(client.xlen(stream))
    except redis.ConnectionError:
        return 0


def replay(config: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    summary = tmp_path / "summary.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.replay", "--config", str(config), "--input", str(CLIP),
         "--summary-json", str(summary)], cwd=REPO, capture_output=True, text=True,
        timeout=300)
    return proc, (json.loads(summary.read_text()) if summary.exists() else {})


def write_config(tmp_path: Path, url: str, extra: str = "") -> Path:
    config = tmp_path / "station.yaml"
    config.write_text(f"""station: {{id: st1}}
cameras: [{{id: clip, url: {CLIP}}}]
redis:
  url: '{url}'
  reconnect: {{initial_delay_s: 0.1, max_delay_s: 0.5}}
{extra}
spool: {{dir: {tmp_path / 'spool'}, drain_timeout_s: 15}}
""")
    return config


@needs_clip
def test_case_redis_restarted_empty_mid_run(redis_server_factory, tmp_path: Path) -> None:
    """Field case 4: the data folder is lost and Redis comes back empty while the replay
    writes. The loss is found from the run id, counted, logged and in the exit code; what
    was written during the outage is still delivered."""
    server = redis_server_factory("crash")
    stream = events_stream("cctv", "st1", "clip")
    watcher = redis.Redis.from_url(server.url, socket_timeout=2)
    held: list[int] = []

    def crash_and_lose_the_data() -> None:
        time.sleep(0.1)  # the batch's replies are on their way back: acknowledged
        held.append(int(watcher.xlen(stream)))
        server.kill()
        shutil.rmtree(server.data_dir)
        time.sleep(1.0)  # the pipeline's next batch meets a closed port: spooled
        server.start()

    restarter = BackgroundAction(server)
    restarter.run_when(lambda: xlen_or_zero(watcher, stream) > 0, crash_and_lose_the_data)
    try:
        proc, summary = replay(write_config(tmp_path, server.url), tmp_path)
        final = int(watcher.xlen(stream))
    finally:
        watcher.close()
        restarter.close()
    lost = held[0]
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert 0 < lost < CLIP_EVENTS
    assert summary["events_published"] == CLIP_EVENTS
    assert summary["events_not_delivered"] == 0 and summary["redis_entries_lost"] == lost
    assert final == CLIP_EVENTS - lost  # everything after the crash arrived, spool included
    assert "redis server restarted or failed over (run id" in proc.stderr
    assert f"redis lost {lost} acknowledged entries of {stream}" in proc.stderr
    assert "flushed" in proc.stderr and "spooled entries to redis, 0 left" in proc.stderr
    assert f"| entries lost by redis            | {lost} |" in proc.stdout


def test_restart_from_an_older_snapshot_counts_the_missing_tail(redis_server_factory,
                                                                tmp_path: Path) -> None:
    """Not empty, just behind: an RDB snapshot older than the last writes."""
    server = redis_server_factory("rdb", persistence="rdb", extra_args=["--save", ""])
    admin = redis.Redis.from_url(server.url)
    losses = []
    publisher = EventPublisher(RedisConfig(url=server.url, publish_batch_size=5),
                               SpoolConfig(dir=tmp_path / "spool"), "st1",
                               on_loss=losses.append)
    publisher.start()
    smoothed = AlertEngine(AlertsConfig(), SmoothingConfig(), "st1").observe(face("cam1", 0))[0]
    for i in range(10):
        publisher.publish_event(face("cam1", i), smoothed)
    admin.save()  # the snapshot holds these 10
    for i in range(10, 17):
        publisher.publish_event(face("cam1", i), smoothed)
    publisher.flush()
    server.kill()  # no final save: the last 7 exist only in memory
    server.start()
    for i in range(17, 20):
        publisher.publish_event(face("cam1", i), smoothed)
    publisher.stop()
    stats = publisher.stats()
    assert [(x.stream, x.entries, x.vanished) for x in losses] == [
        (events_stream("cctv", "st1", "cam1"), 7, False)]
    assert (stats.entries_lost, stats.streams_lost, stats.server_restarts) == (7, 0, 1)
    assert stats.published_events == 20 and stats.events_not_delivered == 0
    assert admin.xlen(events_stream("cctv", "st1", "cam1")) == 13
    admin.close()


@needs_clip
def test_case_streams_evicted_under_allkeys_lru(redis_server_factory, tmp_path: Path) -> None:
    """Field case 2: allkeys-lru, a consumer group made before the run, the stream and its
    group evicted mid-run. Start-up warns; the loss is counted; the running consumer
    re-creates its group and says what may be missing."""
    server = redis_server_factory("evict", extra_args=["--maxmemory-policy", "allkeys-lru"])
    stream = events_stream("cctv", "st1", "clip")
    admin = redis.Redis.from_url(server.url, socket_timeout=5)
    admin.xgroup_create(stream, "ops", id="0", mkstream=True)
    roomy = int(admin.info("memory")["used_memory"]) + 4_000_000
    admin.config_set("maxmemory", roomy)
    config = write_config(tmp_path, server.url)
    consumer = subprocess.Popen(
        [sys.executable, "-m", "pipeline.consume", "--config", str(config), "--group", "ops",
         "--consumer", "c1", "--streams", "events", "--format", "json", "--block-ms", "100",
         "--idle-exit-s", "5"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 30
    while not admin.xinfo_consumers(stream, "ops"):
        assert time.monotonic() < deadline, "the consumer never joined its group"
        time.sleep(0.05)
    evicted: list[int] = []

    def memory_pressure() -> None:
        time.sleep(0.1)
        admin.config_set("maxmemory", 1)  # allkeys-lru now evicts every key...
        admin.ping()  # ...on the next command
        evicted.append(int(admin.info("stats")["evicted_keys"]))
        admin.config_set("maxmemory", roomy)

    restarter = BackgroundAction(server)
    restarter.run_when(lambda: xlen_or_zero(admin, stream) > 0, memory_pressure)
    try:
        proc, summary = replay(config, tmp_path)
        out, err = consumer.communicate(timeout=60)
        final = int(admin.xlen(stream))
        final_ids = {json.loads(f[b"data"])["msg_id"] for _, f in admin.xrange(stream)}
    finally:
        if consumer.poll() is None:
            consumer.kill()
        restarter.close()
    assert evicted and evicted[0] >= 1
    assert "redis maxmemory-policy is allkeys-lru" in proc.stderr
    assert proc.returncode == 3, proc.stderr[-3000:]
    lost = summary["redis_entries_lost"]
    assert summary["events_published"] == CLIP_EVENTS and summary["events_not_delivered"] == 0
    assert 0 < lost == CLIP_EVENTS - final  # every evicted entry was found and counted
    assert f"redis lost {lost} acknowledged entries of {stream}" in proc.stderr
    # the consumer did not die on NOGROUP: it re-created the group and read on
    assert consumer.returncode == 3, err[-3000:]
    assert "consumer group ops on cctv:st1:events:clip had vanished" in err
    assert "re-created it from 0" in err and "may be lost" in err
    printed = {json.loads(line)["msg_id"] for line in out.splitlines() if line.strip()}
    assert final_ids <= printed  # everything the stream holds now reached the consumer
    admin.close()


@needs_clip
def test_evicting_policy_refused_when_configured(redis_server_factory, tmp_path: Path) -> None:
    server = redis_server_factory("lru", extra_args=["--maxmemory-policy", "allkeys-lfu",
                                                     "--maxmemory", "100mb"])
    config = write_config(tmp_path, server.url, "  refuse_evicting_policy: true")
    proc, summary = replay(config, tmp_path)
    assert proc.returncode == 2 and summary == {}
    assert "redis maxmemory-policy is allkeys-lfu (maxmemory 104857600 bytes)" in proc.stderr
    assert "refusing to start because redis.refuse_evicting_policy is true" in proc.stderr
    client = redis.Redis.from_url(server.url)
    assert client.dbsize() == 0
    client.close()


def test_loss_reaches_run_metrics_prometheus_and_the_run_exit_code(redis_server,
                                                                   tmp_path: Path) -> None:
    config = parse_config(f"""
station: {{id: st1}}
cameras: [{{id: cam1, url: rtsp://127.0.0.1:1/none}}]
redis: {{url: '{redis_server.url}', publish_max_wait_ms: 0, publish_batch_size: 4}}
spool: {{dir: {tmp_path / 'spool'}}}
""")
    runner = LiveRunner(config)
    with EventOutput(config, runner.metrics, CLASSES) as output:
        output.handle([face("cam1", i) for i in range(8)], [], "cam1")
        redis_server.kill()
        shutil.rmtree(redis_server.data_dir)
        redis_server.start()
        output.handle([face("cam1", i) for i in range(8, 12)], [], "cam1")
    assert (output.events_published, output.events_not_delivered, output.entries_lost) == (
        12, 0, 8)
    assert runner.metrics.total("redis_entries_lost", "cam1") == 8
    assert runner.metrics.total("redis_streams_lost") == 1
    scrape = generate_latest(runner.metrics.registry).decode()
    assert 'cctv_events_total{camera="cam1",kind="redis_entries_lost"} 8.0' in scrape
    assert delivery_exit_code(runner) == 3


def test_without_info_and_xlen_rights_loss_is_still_seen_from_vanished_streams(
        redis_server, tmp_path: Path, caplog) -> None:
    """A deployment whose ACL grants only XADD: the policy check becomes the operator's
    (logged), and a stream that vanishes is still found by XADD NOMKSTREAM."""
    admin = redis.Redis.from_url(redis_server.url)
    admin.execute_command("ACL", "SETUSER", "writer", "on", ">writer-pw", "~cctv:*",
                          "-@all", "+ping", "+hello", "+auth", "+client|setname", "+xadd")
    cfg = RedisConfig(url=redis_server.url, publish_batch_size=3,
                      credentials={"username_env": "W_USER", "password_env": "W_PW"})
    losses = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("W_USER", "writer")
        mp.setenv("W_PW", "writer-pw")
        publisher = EventPublisher(cfg, SpoolConfig(dir=tmp_path / "spool"), "st1",
                                   on_loss=losses.append)
        with caplog.at_level("INFO", logger="pipeline.sinks.publisher"):
            publisher.start()
    assert "maxmemory-policy" in caplog.text and "deployment check" in caplog.text
    smoothed = AlertEngine(AlertsConfig(), SmoothingConfig(), "st1").observe(face("cam1", 0))[0]
    for i in range(6):
        publisher.publish_event(face("cam1", i), smoothed)
    admin.delete(events_stream("cctv", "st1", "cam1"))  # as an eviction would
    for i in range(6, 9):
        publisher.publish_event(face("cam1", i), smoothed)
    publisher.stop()
    assert [(x.entries, x.vanished) for x in losses] == [(6, True)]
    assert publisher.stats().entries_lost == 6 and publisher.stats().published_events == 9
    assert admin.xlen(events_stream("cctv", "st1", "cam1")) == 3
    admin.close()


def test_volatile_policy_is_accepted_allkeys_refused(redis_server_factory,
                                                     tmp_path: Path) -> None:
    server = redis_server_factory("volatile", extra_args=["--maxmemory-policy", "volatile-lru"])
    ok = EventPublisher(RedisConfig(url=server.url, refuse_evicting_policy=True),
                        SpoolConfig(dir=tmp_path / "a"), "st1")
    ok.start()  # volatile-* evicts only keys with a TTL; the streams have none
    ok.stop()
    client = redis.Redis.from_url(server.url)
    client.config_set("maxmemory-policy", "allkeys-random")
    refused = EventPublisher(RedisConfig(url=server.url, refuse_evicting_policy=True),
                             SpoolConfig(dir=tmp_path / "b"), "st1")
    with pytest.raises(RedisRefusedError, match="allkeys-random"):
        refused.start()
    client.close()
