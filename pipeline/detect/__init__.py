"""Face detection: one :class:`Detector` interface, backends mtcnn (default), yunet, scrfd."""

from pipeline.detect.base import Detector, FaceArrays
from pipeline.detect.factory import create_detector

__all__ = ["Detector", "FaceArrays", "create_detector"]
