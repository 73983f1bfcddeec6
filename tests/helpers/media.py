"""Test media made with PyAV: H.264 clips without B-frames, as cameras send them."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import av
import numpy as np


def encode_clip(path: Path, frames_bgr: Iterable[np.ndarray], fps: int = 25,
                codec: str = "libx264", gop: int | None = None) -> Path:
    """Write BGR uint8 frames to an H.264 MP4 (or any container PyAV infers from ``path``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    iterator = iter(frames_bgr)
    first = next(iterator)
    height, width = first.shape[:2]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.max_b_frames = 0
        stream.codec_context.gop_size = gop or fps
        if codec == "libx264":
            stream.codec_context.options = {"preset": "veryfast", "tune": "zerolatency"}
        for image in _chain(first, iterator):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    yield first
    yield from rest


def moving_square_frames(count: int, width: int = 160, height: int = 120,
                         seed: int = 0) -> list[np.ndarray]:
    """Frames with a bright square moving left to right on a noisy background."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(count):
        image = rng.integers(0, 40, size=(height, width, 3), dtype=np.uint8)
        x = 5 + (i * 3) % max(1, width - 30)
        image[40:64, x:x + 24] = (30, 200, 240)
        frames.append(image)
    return frames


def make_clip(path: Path, count: int = 50, fps: int = 25, width: int = 160, height: int = 120,
              frame_fn: Callable[[int], list[np.ndarray]] | None = None) -> Path:
    frames = frame_fn(count) if frame_fn else moving_square_frames(count, width, height)
    return encode_clip(path, frames, fps=fps)
