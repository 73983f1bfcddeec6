"""Alert evidence through a whole replay (real PyAV media, real Redis): each alert carries
its planned evidence URIs at once, and a cctv.evidence.v1 message on the evidence stream
references the clip (decodes, covers the window to within one GOP), the snapshot and the
crops, with SHA-256 of the files written (0600). With evidence off nothing is written."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
import redis

from pipeline.config import AppConfig, parse_config
from pipeline.runner import ReplayOptions, run_replay
from pipeline.sinks.embedded import EmbeddedRedis
from pipeline.sinks.streams import evidence_stream
from tests.helpers.evidence import check_evidence, read_evidence

pytest.importorskip("insightface", reason="the demo clip is built from insightface's photo")
GOP_MS = 1000.0  # the demo clip's encoder puts a keyframe every second
RULES = """
alerts:
  rules:
    - {id: calm, emotions: [neutral, happiness], combine: sum, threshold: 0.3,
       min_duration_s: 1.0, cooldown_s: 60, severity: info}
"""


@pytest.fixture(scope="module")
def demo_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipeline.demo_clip import build_demo_clip

    return build_demo_clip(tmp_path_factory.mktemp("evidence") / "demo.mp4", seconds=4)


def _config(tmp_path: Path, redis_url: str, evidence: str) -> AppConfig:
    return parse_config(f"""
station: {{id: ev}}
redis: {{url: {redis_url}, publish_max_wait_ms: 0}}
spool: {{dir: {tmp_path / 'spool'}}}
evidence: {evidence}
{RULES}
""")


def test_replay_alerts_carry_evidence_written_with_sha256(tmp_path: Path, demo_clip: Path,
                                                          redis_server: EmbeddedRedis,
                                                          redis_client: redis.Redis) -> None:
    root = tmp_path / "evidence"
    config = _config(tmp_path, redis_server.url, f"""{{enabled: true, dir: {root},
  pre_s: 1.0, post_s: 1.0, ring_max_s: 8.0, blur_uninvolved_faces: true}}""")
    annotated = tmp_path / "annotated.mp4"
    summary = run_replay(config, ReplayOptions(inputs=demo_clip, annotate_path=annotated))

    alerts, messages = read_evidence(redis_client, "ev")
    assert summary.alerts_published == len(alerts) > 0
    kinds = check_evidence(root, alerts, messages, (640, 360), 1000.0, GOP_MS)
    assert kinds["clip"] == kinds["snapshot"] == len(alerts) and kinds["crop"] >= len(alerts)
    assert any(m.complete for m in messages), [m.notes for m in messages]
    assert summary.evidence_written == sum(kinds.values()) and summary.evidence_failed == 0
    assert summary.evidence_dir == str(root)
    audit = [json.loads(line) for line in (root / "audit.jsonl").read_text().splitlines()]
    assert [a["action"] for a in audit] == ["write"] * summary.evidence_written
    assert {a["sha256"] for a in audit} == {r.sha256 for m in messages for r in m.refs}
    # the annotated video marks the alert moments with a red border
    with av.open(str(annotated)) as container:
        borders = [frame.to_ndarray(format="bgr24")[1, 100:540] for frame in
                   container.decode(video=0)]
    red = [bool((row[:, 2] > 180).mean() > 0.8 and (row[:, 1] < 80).mean() > 0.8)
           for row in borders]
    assert sum(red) >= 25, "at least one alert marked for a second or more"


def test_evidence_off_writes_nothing(tmp_path: Path, demo_clip: Path,
                                     redis_server: EmbeddedRedis,
                                     redis_client: redis.Redis) -> None:
    root = tmp_path / "evidence"
    config = _config(tmp_path, redis_server.url, f"{{enabled: false, dir: {root}}}")
    summary = run_replay(config, ReplayOptions(inputs=demo_clip))
    alerts, messages = read_evidence(redis_client, "ev")
    assert summary.alerts_published == len(alerts) > 0
    assert all(alert.evidence == [] for alert in alerts)
    assert messages == [] and not redis_client.exists(evidence_stream("cctv", "ev"))
    assert not root.exists()
    assert summary.evidence_dir is None and summary.to_json()["evidence_written"] == 0
