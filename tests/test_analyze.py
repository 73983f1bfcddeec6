"""Per-camera analysis pacing and crop geometry."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.analyze import CameraAnalyzer, native_crop_size
from pipeline.config import AppConfig, CameraConfig
from pipeline.detect.base import Detector, FaceArrays
from pipeline.detect.scan import FaceSizeRange
from pipeline.metrics import RunMetrics
from pipeline.records import Frame


class _CountingDetector(Detector):
    """A real Detector subclass that finds nothing and counts its passes."""

    name = "counting"

    def _load(self) -> None:
        self.calls = 0

    def _detect_image(self, image_bgr: np.ndarray, sizes: FaceSizeRange) -> FaceArrays:
        self.calls += 1
        return FaceArrays.empty()


def _analyzer(analysis_fps: float | None) -> tuple[CameraAnalyzer, _CountingDetector]:
    config = AppConfig.model_validate({"detector": {"motion_gate": {"enabled": False}}})
    detector = _CountingDetector(config.detector)
    detector.start()
    camera = CameraConfig(id="cam", url=str(Path("x.mp4")), analysis_fps=analysis_fps)
    return CameraAnalyzer(camera, config, detector, RunMetrics()), detector


def _frames(count: int, fps: float, start_ms: float = 0.0) -> list[Frame]:
    image = np.zeros((48, 64, 3), dtype=np.uint8)
    return [Frame("cam", i, start_ms + i * 1000.0 / fps, image) for i in range(count)]


def test_detects_every_5th_frame_of_25fps_at_5fps() -> None:
    analyzer, detector = _analyzer(5.0)
    detected = [analyzer.process(f).detected for f in _frames(50, 25.0)]
    assert detected == [i % 5 == 0 for i in range(50)]
    assert detector.calls == 10


def test_every_frame_when_analysis_fps_is_none() -> None:
    analyzer, detector = _analyzer(None)
    assert all(analyzer.process(f).detected for f in _frames(7, 25.0))
    assert detector.calls == 7


def test_cadence_restarts_after_a_stream_jump() -> None:
    analyzer, _ = _analyzer(5.0)
    first = [analyzer.process(f).detected for f in _frames(3, 25.0)]
    later = [analyzer.process(f).detected for f in _frames(6, 25.0, start_ms=10_000.0)]
    assert first == [True, False, False]
    assert later == [True, False, False, False, False, True]


def test_native_crop_size_never_upsamples_small_faces() -> None:
    assert native_crop_size(18.0, 64) == 20
    assert native_crop_size(200.0, 64) == 64
    assert native_crop_size(3.0, 64) == 8
