"""Video sources decoded with PyAV: supervised live cameras and deterministic file replay."""

from pipeline.sources.backoff import Backoff
from pipeline.sources.camera import SupervisedCamera
from pipeline.sources.health import CameraHealth, CameraState
from pipeline.sources.metrics import CameraHealthCollector
from pipeline.sources.replay import (
    VIDEO_EXTENSIONS,
    DecodeReport,
    ReplayFileResult,
    camera_id_for,
    list_videos,
    replay_file,
    replay_path,
)
from pipeline.sources.urls import PermanentSourceError, SourceUrl, parse_source_url

__all__ = [
    "VIDEO_EXTENSIONS",
    "Backoff",
    "CameraHealth",
    "CameraHealthCollector",
    "CameraState",
    "DecodeReport",
    "PermanentSourceError",
    "ReplayFileResult",
    "SourceUrl",
    "SupervisedCamera",
    "camera_id_for",
    "list_videos",
    "parse_source_url",
    "replay_file",
    "replay_path",
]
