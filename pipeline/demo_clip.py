"""Build the embedded demo input: a low-resolution CCTV-like clip from insightface's t1.jpg.

The group photo is shrunk so faces are about 20-30 px wide, mirrored into a small crowd
scene, and filmed by a virtual camera with a slow pan and zoom, sensor noise and slight blur,
then encoded as H.264 without B-frames. The same seed gives identical frames.

Usage: ``python -m pipeline.demo_clip OUT.mp4 [--seconds 8] [--fps 25] [--seed 0]``
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from importlib import util as import_util
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import PipelineError
from pipeline.media_io import H264Writer

logger = logging.getLogger(__name__)

FRAME_WH = (640, 360)
# Faces in t1.jpg are about 100 px wide; this brings them to about 24 px before zoom.
_PHOTO_SCALE = 0.24
_ZOOM_RANGE = (1.0, 1.2)
_NOISE_STD = 3.0
# Periods of the zoom and of the x / y pan: faces drift by up to about 2 px per frame at 25 fps.
_ZOOM_PERIOD_S = 20.0
_PAN_PERIOD_S = (16.0, 23.0)
_BLUR_SIGMA = 0.7


def demo_photo_path() -> Path:
    """Where insightface keeps its sample group photo; PipelineError when it is missing.

    The package is located, not imported: importing insightface pulls in its model zoo.
    """
    spec = import_util.find_spec("insightface")
    if spec is None or not spec.submodule_search_locations:
        raise PipelineError("the demo clip needs the 'insightface' package for its sample "
                            "photo t1.jpg; pip install insightface")
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    path = package_dir / "data" / "images" / "t1.jpg"
    if not path.is_file():
        raise PipelineError(f"insightface sample photo not found at {path}; reinstall "
                            f"insightface (2.x ships data/images/t1.jpg)")
    return path


def _scene(photo_bgr: np.ndarray) -> np.ndarray:
    """The shrunken photo tiled 3x2, mirrored left-right only (faces stay upright), with the
    second row shifted by half a tile: a crowd larger than the frame."""
    small = cv2.resize(photo_bgr, None, fx=_PHOTO_SCALE, fy=_PHOTO_SCALE,
                       interpolation=cv2.INTER_AREA)
    row = np.concatenate([small, small[:, ::-1], small], axis=1)
    second = np.roll(row[:, ::-1], small.shape[1] // 2, axis=1)
    return np.concatenate([row, second], axis=0)


def _camera_matrix(t_s: float, scene_wh: tuple[int, int], phases: np.ndarray) -> np.ndarray:
    """Affine map from scene to frame at ``t_s`` seconds: slow, smooth pan and zoom."""
    frame_w, frame_h = FRAME_WH
    lo, hi = _ZOOM_RANGE
    zoom = lo + (hi - lo) * 0.5 * (1 - np.cos(2 * np.pi * t_s / _ZOOM_PERIOD_S + phases[0]))
    view_w, view_h = frame_w / zoom, frame_h / zoom
    # The view centre sweeps within the scene on slow sinusoids, never leaving it.
    span_x = (scene_wh[0] - view_w) / 2.0
    span_y = (scene_wh[1] - view_h) / 2.0
    cx = scene_wh[0] / 2.0 + 0.9 * span_x * np.sin(2 * np.pi * t_s / _PAN_PERIOD_S[0] + phases[1])
    cy = scene_wh[1] / 2.0 + 0.9 * span_y * np.sin(2 * np.pi * t_s / _PAN_PERIOD_S[1] + phases[2])
    return np.array([[zoom, 0.0, frame_w / 2.0 - zoom * cx],
                     [0.0, zoom, frame_h / 2.0 - zoom * cy]], dtype=np.float64)


def demo_scene() -> np.ndarray:
    """The static crowd scene the virtual camera films (BGR uint8)."""
    path = demo_photo_path()
    photo = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if photo is None:
        raise PipelineError(f"cannot decode {path}")
    return _scene(photo)


def camera_matrices(scene_wh: tuple[int, int], seconds: float = 8, fps: int = 25,
                    seed: int = 0) -> np.ndarray:
    """Per-frame (2, 3) affine maps from scene to frame pixels, shape (frames, 2, 3).

    Everything in the scene is static, so these are the ground truth of where each face is
    in every frame (tests use them to check tracks never switch faces).
    """
    if seconds <= 0 or fps <= 0:
        raise PipelineError(f"expected seconds > 0 and fps > 0, got {seconds} and {fps}")
    phases = np.random.default_rng([seed, 0]).uniform(0, 2 * np.pi, size=3)
    count = round(seconds * fps)
    return np.stack([_camera_matrix(i / fps, scene_wh, phases)
                     for i in range(count)])


def demo_frames(seconds: float = 8, fps: int = 25, seed: int = 0) -> Iterator[np.ndarray]:
    """Yield the demo clip's BGR frames (640x360). Deterministic for a given seed."""
    scene = demo_scene()
    matrices = camera_matrices((scene.shape[1], scene.shape[0]), seconds, fps, seed)
    rng = np.random.default_rng([seed, 1])
    for matrix in matrices:
        image = cv2.warpAffine(scene, matrix, FRAME_WH, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        image = cv2.GaussianBlur(image, (0, 0), _BLUR_SIGMA)
        noise = rng.normal(0.0, _NOISE_STD, size=image.shape)
        yield np.clip(image.astype(np.float64) + noise, 0, 255).astype(np.uint8)


def build_demo_clip(out_path: str | Path, seconds: float = 8, fps: int = 25,
                    seed: int = 0) -> Path:
    """Write the demo clip as H.264 MP4 (no B-frames) and return its path."""
    out_path = Path(out_path)
    with H264Writer(out_path, fps=fps, size_wh=FRAME_WH, crf=20) as writer:
        for image in demo_frames(seconds, fps, seed):
            writer.write(image)
    logger.info("wrote demo clip %s (%d frames)", out_path, writer.frame_count)
    return out_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.demo_clip", description=__doc__)
    parser.add_argument("out", type=Path, help="output .mp4 path")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--fps", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        build_demo_clip(args.out, args.seconds, args.fps, args.seed)
    except PipelineError as err:
        logger.error("%s", err)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
