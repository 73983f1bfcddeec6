"""benchmarks/live_capacity.py on a short run: real RTSP camera, real pipeline.run, real Redis;
only the JSON's shape and the consistency of its figures are checked (timing is the
benchmark's business, on an idle machine)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import live_capacity

pytest.importorskip("insightface", reason="the demo clip is built from insightface's photo")


def test_live_capacity_json_shape_on_a_short_run(tmp_path: Path) -> None:
    from pipeline.demo_clip import build_demo_clip

    clip = build_demo_clip(tmp_path / "media" / "demo.mp4", seconds=3)
    config = tmp_path / "capacity.yaml"
    config.write_text("cameras:\n  - {id: template, url: x.mp4, analysis_fps: 5.0}\n"
                      "detector: {backend: mtcnn, min_face_px: 20}\n")
    out = tmp_path / "capacity.json"
    assert live_capacity.main(["--config", str(config), "--json", str(out), "--clip", str(clip),
                               "--max-cameras", "1", "--warmup-s", "1", "--window-s",
                               "4"]) == 0
    result = json.loads(out.read_text())
    assert {"date", "config", "clip", "detector", "analysis_fps", "hold_fraction",
            "cameras_held", "rss_per_extra_camera_mb", "runs", "machine"} <= set(result)
    assert result["detector"] == "mtcnn" and result["analysis_fps"] == 5.0
    (run,) = result["runs"]
    assert run["cameras"] == 1 and isinstance(run["held"], bool)
    assert result["cameras_held"] == (1 if run["held"] else 0)
    assert run["process"]["rss_mb"] > 50 and run["process"]["peak_rss_mb"] >= \
        run["process"]["rss_mb"] and run["process"]["cpu_percent"] > 0
    (camera,) = run["per_camera"]
    assert set(camera) == {"camera", "analysed_fps", "frames_analysed_fps", "decoded_fps",
                           "dropped_frames", "dropped_fraction", "events", "latency_p50_s",
                           "latency_p95_s", "size_guided_fraction",
                           "detector_input_mpx_per_pass"}
    assert camera["camera"] == "cam-1"
    assert 0 < camera["analysed_fps"] <= camera["frames_analysed_fps"] + 0.5
    assert camera["decoded_fps"] > 10  # the 25 fps clip, served in real time
    assert camera["dropped_frames"] >= 0
    if camera["events"]:
        assert 0 <= camera["latency_p50_s"] <= camera["latency_p95_s"] < 30
    assert camera["detector_input_mpx_per_pass"] > 0


def test_detection_work_json_shape_on_a_short_run(tmp_path: Path) -> None:
    from benchmarks import detection_work
    from pipeline.demo_clip import build_demo_clip

    clip = build_demo_clip(tmp_path / "media" / "demo.mp4", seconds=2)
    config = tmp_path / "work.yaml"
    config.write_text("detector: {backend: mtcnn, min_face_px: 20}\n")
    out = tmp_path / "work.json"
    assert detection_work.main(["--config", str(config), "--json", str(out), "--clip", str(clip),
                                "--loops", "2", "--measure-loops", "1",
                                "--variants", "full,default"]) == 0
    result = json.loads(out.read_text())
    assert result["detector"] == "mtcnn" and result["loops"] == 2
    full, default = result["variants"]["full"], result["variants"]["default"]
    for variant in (full, default):
        assert {"passes", "input_mpx_per_pass", "analyse_ms_per_pass", "faces_detected",
                "small_faces_detected", "tracks", "new_tracks_found"} <= set(variant)
        assert variant["passes"] == 10  # 50 frames a loop, every 5th
    assert full["faces_detected"] > 0 and default["input_mpx_per_pass"] > 0
    assert full["new_tracks_found"]["within_0"] == 1.0  # the reference against itself
    assert 0 <= default["new_tracks_found"]["within_0"] <= \
        default["new_tracks_found"]["within_4"] <= 1
