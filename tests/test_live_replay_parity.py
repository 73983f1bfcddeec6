"""Live and replay publish the same story (issue 12): the same clip through LiveRunner (a file
camera, paced in real time) and through run_replay gives identical per-track event sequences:
crops, probabilities, smoothed state and observation counts, in the same order. Before the
ordered output path, a track's end could overtake its queued crops live, and its last event
then carried a smoothed state reset to a single observation."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import redis

from pipeline.config import AppConfig, parse_config
from pipeline.events import FaceTrackEventV1, from_fields
from pipeline.runner import LiveRunner, ReplayOptions, run_replay
from pipeline.sinks.embedded import EmbeddedRedis
from pipeline.sinks.streams import events_stream

pytest.importorskip("insightface", reason="the demo clip is built from insightface's photo")
CLIP_FRAMES = 50  # 2 s at 25 fps


@pytest.fixture(scope="module")
def short_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.demo_clip import build_demo_clip

    return build_demo_clip(tmp_path_factory.mktemp("parity") / "parity.mp4", seconds=2)


def _config(tmp_path: Path, redis_url: str, station: str, clip: Path) -> AppConfig:
    return parse_config(f"""
station: {{id: {station}}}
cameras:
  - {{id: cam, url: "{clip}", analysis_fps: 5}}
source: {{live_queue_size: 64}}
select: {{interval_s: 0.5}}
redis: {{url: {redis_url}, publish_max_wait_ms: 0}}
spool: {{dir: {tmp_path / station}}}
""")


def _story(client: redis.Redis, station: str) -> dict[int, list[tuple]]:
    """Per track, its events in publication order, everything but ids and wall clocks."""
    story: dict[int, list[tuple]] = {}
    for _id, fields in client.xrange(events_stream("cctv", station, "cam")):
        event = from_fields(fields)
        assert isinstance(event, FaceTrackEventV1)
        if event.frame_index >= CLIP_FRAMES:  # live loops the file: keep the first pass
            continue
        story.setdefault(event.track_id, []).append((
            event.frame_index, round(event.ts_ms, 3), tuple(round(v, 2) for v in event.bbox_xyxy),
            tuple(sorted((k, round(v, 5)) for k, v in event.probabilities.items())),
            event.smoothed.top_class, event.smoothed.observations,
            round(event.smoothed.confidence, 5), round(event.first_seen_ts_ms, 3)))
    return story


def test_live_and_replay_publish_identical_track_stories(tmp_path: Path, short_clip: Path,
                                                         redis_server: EmbeddedRedis,
                                                         redis_client: redis.Redis) -> None:
    replay_summary = run_replay(_config(tmp_path, redis_server.url, "replay", short_clip),
                                ReplayOptions(inputs=short_clip))
    replay = _story(redis_client, "replay")
    assert replay_summary.events_published > 10 and len(replay) >= 5

    runner = LiveRunner(_config(tmp_path, redis_server.url, "live", short_clip))
    thread = threading.Thread(target=runner.run, kwargs={"duration_s": 60}, daemon=True)
    thread.start()
    try:
        # the first pass is over once the camera has looped and been analysed a while
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and (
                "cam" not in runner.cameras
                or runner.cameras["cam"].health().frames_decoded < 2 * CLIP_FRAMES):
            time.sleep(0.1)
        assert runner.cameras["cam"].health().frames_decoded >= 2 * CLIP_FRAMES
    finally:
        runner.stop()
        thread.join(timeout=30)
    assert not thread.is_alive()
    live = _story(redis_client, "live")

    assert sorted(live) == sorted(replay), "the same tracks"
    for track_id, events in replay.items():
        assert live[track_id] == events, f"track {track_id}: live and replay differ"
    # the smoothed state grows along each track: no reset to a single observation at its end
    for events in live.values():
        counts = [e[5] for e in events]
        assert counts == sorted(counts) and counts[-1] == len(counts)
