"""Face detection: one :class:`Detector` interface, backends mtcnn (default), yunet, scrfd."""

from pipeline.detect.base import Detector, FaceArrays
from pipeline.detect.factory import create_detector
from pipeline.detect.stage import DetectStage

__all__ = ["DetectStage", "Detector", "FaceArrays", "create_detector"]
