"""H.264 MP4 writing with PyAV, encoded without B-frames as CCTV cameras do."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np

from pipeline.errors import PipelineError


class H264Writer:
    """Writes BGR uint8 frames of one fixed size to an MP4 file.

    H.264 in yuv420p needs even sides, so an odd width or height is padded by one black
    pixel column or row. Use as a context manager, or call :meth:`close` (safe twice).
    """

    def __init__(self, path: str | Path, fps: float, size_wh: tuple[int, int],
                 gop: int | None = None, crf: int = 23) -> None:
        width, height = (int(v) for v in size_wh)
        if width < 2 or height < 2:
            raise PipelineError(f"{path}: expected a frame size of at least 2x2, got {size_wh}")
        if not fps > 0:
            raise PipelineError(f"{path}: expected fps > 0, got {fps}")
        self.path = Path(path)
        self.size_wh = (width, height)
        self._coded_wh = (width + width % 2, height + height % 2)
        self.frame_count = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._container = av.open(str(self.path), mode="w")
            rate = Fraction(fps).limit_denominator(1001)
            self._stream = self._container.add_stream("libx264", rate=rate)
        except (av.FFmpegError, OSError, ValueError) as err:
            raise PipelineError(f"cannot open {self.path} for H.264 writing: {err}") from err
        self._stream.width, self._stream.height = self._coded_wh
        self._stream.pix_fmt = "yuv420p"
        codec = self._stream.codec_context
        codec.max_b_frames = 0
        codec.gop_size = gop or max(1, round(fps))
        codec.options = {"preset": "veryfast", "crf": str(crf)}
        self._closed = False

    def write(self, image_bgr: np.ndarray) -> None:
        if self._closed:
            raise PipelineError(f"{self.path}: write after close")
        expected = (self.size_wh[1], self.size_wh[0], 3)
        if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 \
                or image_bgr.shape != expected:
            raise PipelineError(f"{self.path}: expected a uint8 BGR frame of shape {expected}, "
                                f"got {getattr(image_bgr, 'dtype', type(image_bgr).__name__)} "
                                f"{getattr(image_bgr, 'shape', '')}")
        if self._coded_wh != self.size_wh:
            padded = np.zeros((self._coded_wh[1], self._coded_wh[0], 3), dtype=np.uint8)
            padded[:expected[0], :expected[1]] = image_bgr
            image_bgr = padded
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image_bgr), format="bgr24")
        self._mux(self._stream.encode(frame))
        self.frame_count += 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._mux(self._stream.encode())
        finally:
            self._container.close()

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def _mux(self, packets: list[av.Packet]) -> None:
        try:
            for packet in packets:
                self._container.mux(packet)
        except (av.FFmpegError, OSError) as err:
            raise PipelineError(f"{self.path}: writing video failed: {err}") from err
