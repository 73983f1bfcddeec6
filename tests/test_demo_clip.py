"""The embedded demo clip: decodes, is deterministic, and holds small detectable faces."""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

import pipeline.demo_clip as demo_clip
from pipeline.demo_clip import FRAME_WH, build_demo_clip, demo_frames
from pipeline.errors import PipelineError


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.has_b_frames is False
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_demo_clip(tmp_path_factory.mktemp("demo") / "demo.mp4", seconds=2, fps=25)


def test_clip_decodes_with_expected_frames_and_size(clip: Path) -> None:
    frames = decode(clip)
    assert len(frames) == 50
    assert frames[0].shape == (FRAME_WH[1], FRAME_WH[0], 3)
    # The camera pans: consecutive frames differ, but only a little.
    step = np.abs(frames[1].astype(int) - frames[0].astype(int)).mean()
    assert 0.5 < step < 20


def test_same_seed_gives_identical_frames_and_another_seed_differs() -> None:
    first = list(demo_frames(seconds=0.2, fps=25, seed=0))
    second = list(demo_frames(seconds=0.2, fps=25, seed=0))
    other = list(demo_frames(seconds=0.2, fps=25, seed=1))
    assert len(first) == 5
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], other[0])


def test_cli_writes_the_clip(tmp_path: Path) -> None:
    out = tmp_path / "cli" / "demo.mp4"
    assert demo_clip.main([str(out), "--seconds", "0.4", "--fps", "10"]) == 0
    assert len(decode(out)) == 4


def test_missing_sample_photo_is_a_clear_error(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake_spec = importlib.machinery.ModuleSpec("insightface", None, is_package=True)
    fake_spec.submodule_search_locations = [str(tmp_path)]
    monkeypatch.setattr(demo_clip.import_util, "find_spec", lambda name: fake_spec)
    with pytest.raises(PipelineError, match=r"t1\.jpg"):
        build_demo_clip(tmp_path / "x.mp4", seconds=0.2)
    assert demo_clip.main([str(tmp_path / "y.mp4"), "--seconds", "0.2"]) == 1
    monkeypatch.setattr(demo_clip.import_util, "find_spec", lambda name: None)
    with pytest.raises(PipelineError, match="pip install insightface"):
        demo_clip.demo_photo_path()


def test_yunet_finds_small_faces_in_the_clip(clip: Path, yunet_model: Path) -> None:
    detector = cv2.FaceDetectorYN.create(str(yunet_model), "", FRAME_WH, 0.6, 0.3, 200)
    for image in decode(clip)[::10]:
        _, faces = detector.detect(image)
        widths = [] if faces is None else faces[:, 2]
        small = [w for w in widths if 14 <= w <= 34]
        assert len(small) >= 5, f"expected >= 5 faces of 14-34 px, got widths {widths}"
        assert np.median(widths) < 34


def test_rebuilding_gives_the_same_decoded_clip(tmp_path: Path) -> None:
    first = decode(build_demo_clip(tmp_path / "a.mp4", seconds=0.4))
    second = decode(build_demo_clip(tmp_path / "b.mp4", seconds=0.4))
    assert len(first) == len(second) == 10
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
