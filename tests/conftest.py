"""Shared fixtures. Server fixtures (Redis, RTSP) live in tests/helpers and are plugged in here."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.helpers.redis_server", "tests.helpers.rtsp_server"]

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The read-only shared data folder: $CCTV_SHARED, else ../shared beside the repo."""
    return Path(os.environ.get("CCTV_SHARED", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    data = shared_dir() / "data"
    if not data.is_dir():
        pytest.skip(f"shared data not found at {data} (set CCTV_SHARED)")
    return data


@pytest.fixture(scope="session")
def town_centre_clip(shared_data: Path) -> Path:
    clip = shared_data / "cctv" / "town_centre_1080p25.mp4"
    if not clip.is_file():
        pytest.skip(f"{clip} not found")
    return clip


@pytest.fixture(scope="session")
def yunet_model(shared_data: Path) -> Path:
    models = sorted((shared_data / "models").glob("face_detection_yunet*.onnx"))
    if not models:
        pytest.skip("no YuNet model in shared data")
    return models[0]
