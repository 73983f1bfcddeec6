"""benchmarks/rtsp_pacing.py on a short run: the real test RTSP server, real PyAV clients;
the JSON's shape and that a server pacing in real time shows one frame interval per gap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import rtsp_pacing
from tests.helpers.media import make_clip


def test_rtsp_pacing_json_shape_on_a_short_run(tmp_path: Path) -> None:
    clip = make_clip(tmp_path / "clip.mp4", count=50, fps=25, width=160, height=120)
    out = tmp_path / "pacing.json"
    assert rtsp_pacing.main(["--json", str(out), "--clip", str(clip), "--sessions", "2",
                             "--seconds", "3"]) == 0
    result = json.loads(out.read_text())
    assert {"date", "clip", "sessions", "seconds", "command", "per_session"} <= set(result)
    assert [s["session"] for s in result["per_session"]] == [0, 1]
    for session in result["per_session"]:
        assert session["packets_per_s"] == pytest.approx(25.0, rel=0.2)
        assert session["gap_p50_ms"] == pytest.approx(40.0, abs=15.0)
        assert session["gap_max_ms"] >= session["gap_p99_ms"] >= session["gap_p50_ms"]


def test_session_stats_counts_long_gaps_after_the_start_up() -> None:
    times = [0.0, 1.0, 5.0, 5.04, 5.08, 5.5, 5.54]  # the first two fall in the start-up
    stats = rtsp_pacing.session_stats(times, started=0.0)
    assert stats["gaps_over_200_ms"] == 1 and stats["gap_max_ms"] == pytest.approx(420.0)
    with pytest.raises(ValueError, match="only 1 packets"):
        rtsp_pacing.session_stats([0.0, 6.0], started=0.0)
