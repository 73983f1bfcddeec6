"""The detect stage: a started detector applied to frames with each camera's ROI polygons."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from pipeline.detect.base import Detector
from pipeline.detect.geometry import Polygon
from pipeline.records import Detection, Frame
from pipeline.stage import Stage


class DetectStage(Stage[Frame, list[Detection]]):
    """Frame -> detections. ``roi_by_camera`` maps camera id to its ROI polygons
    (``CameraConfig.roi_polygons``); cameras not in it are scanned whole."""

    name = "detect"

    def __init__(self, detector: Detector,
                 roi_by_camera: Mapping[str, Sequence[Polygon]] | None = None) -> None:
        self._detector = detector
        self._roi_by_camera = dict(roi_by_camera or {})

    def start(self) -> None:
        self._detector.start()

    def process(self, item: Frame) -> list[Detection]:
        return self._detector.detect(item.image_bgr, self._roi_by_camera.get(item.camera_id))

    def stop(self) -> None:
        self._detector.stop()
