"""The replay CLI's own output handling (pipeline/replay.py ``main``): where the files went,
and a --summary-json that cannot be written. The analysis itself is the real pipeline in
tests/test_pipeline_e2e.py; here ``run_replay`` returns a fixed summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline import replay
from pipeline.runner import ReplaySummary


@pytest.fixture
def finished_run(monkeypatch: pytest.MonkeyPatch) -> ReplaySummary:
    summary = ReplaySummary(frames=100, faces_detected=40, tracks=3, events_published=12,
                            wall_s=2.0, files_ok=1)
    monkeypatch.setattr(replay, "run_replay", lambda config, options: summary)
    return summary


def _main(tmp_path: Path, *extra: str) -> int:
    config = tmp_path / "c.yaml"
    config.write_text("station: {id: cli}\n")
    return replay.main(["--config", str(config), "--input", str(tmp_path), *extra])


def test_summary_lists_the_files_it_wrote(tmp_path: Path, finished_run: ReplaySummary,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out" / "summary.json"
    missing_video = tmp_path / "never-written.mp4"  # the run wrote no video: not listed
    assert _main(tmp_path, "--summary-json", str(out), "--annotate", str(missing_video)) == 0
    printed = capsys.readouterr().out
    assert "| summary json" in printed and str(out) in printed
    assert "annotated video" not in printed
    assert json.loads(out.read_text())["frames"] == 100


def test_unwritable_summary_json_keeps_the_printed_summary_and_exits_2(
        tmp_path: Path, finished_run: ReplaySummary, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    target = blocker / "summary.json"  # its parent is a file: cannot be made
    assert _main(tmp_path, "--summary-json", str(target)) == 2
    printed = capsys.readouterr().out
    assert "| events published" in printed and "summary json" not in printed
    assert f"cannot write --summary-json {target}" in caplog.text
