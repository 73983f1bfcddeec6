"""YuNet (OpenCV Zoo) through ``cv2.FaceDetectorYN``; the model file is given by path."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np

from pipeline.config import DetectorConfig
from pipeline.detect.base import Detector, FaceArrays
from pipeline.detect.geometry import half_resolution_face_px, region_input_scale
from pipeline.detect.scan import FaceSizeRange
from pipeline.errors import ModelError

# YuNet's smallest anchors resolve faces of about 10 px.
YUNET_MIN_FACE_PX = 10.0
# cv2 returns landmarks as the *person's* right eye, left eye, nose, right and left mouth
# corner: image-left first, which already is the records' order (left/right as seen).
_TOP_K = 5000


class YunetDetector(Detector):
    """``cv2.FaceDetectorYN`` from a bounded pool of networks shared by every calling thread.

    A network keeps its input size and its buffers (about 150 MB at a 1080p input), so two
    threads must not use one at the same time, and one network per camera thread made the
    process grow by that much per camera. A call borrows a network (``setInputSize`` is set
    on every call) and gives it back; at most one network per CPU core is ever opened, since
    more concurrent calls than cores do not run faster (``cv2.setNumThreads`` is
    process-wide); a caller finding none free waits for one.
    """

    name = "yunet"

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__(cfg)
        self._max_nets = max(1, os.cpu_count() or 1)
        self._free: queue.LifoQueue[cv2.FaceDetectorYN] = queue.LifoQueue()
        self._opened = 0
        self._open_lock = threading.Lock()

    def _load(self) -> None:
        path = self.cfg.model_path
        if path is None or not path.is_file():
            raise ModelError(f"yunet model not found: {path}")
        cv2.setNumThreads(self.cfg.threads)
        with self._open_lock:
            self._opened += 1
        self._free.put(self._open_net())  # fail at start-up, not on the first frame

    def _open_net(self) -> cv2.FaceDetectorYN:
        path = self.cfg.model_path
        try:
            return cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), score_threshold=self.cfg.score_threshold,
                nms_threshold=self.cfg.nms_iou, top_k=_TOP_K)
        except cv2.error as err:
            raise ModelError(f"cannot load yunet model {path}: {err}") from err

    @contextmanager
    def _borrow(self) -> Iterator[cv2.FaceDetectorYN]:
        """A network for this call: a free one, a new one while under the cap, else the next
        one given back."""
        try:
            net = self._free.get_nowait()
        except queue.Empty:
            with self._open_lock:
                may_open = self._opened < self._max_nets
                if may_open:
                    self._opened += 1
            if not may_open:
                net = self._free.get()
            else:
                try:
                    net = self._open_net()
                except ModelError:
                    with self._open_lock:
                        self._opened -= 1
                    raise
        try:
            yield net
        finally:
            self._free.put(net)

    def _unload(self) -> None:
        with self._open_lock:
            self._free = queue.LifoQueue()
            self._opened = 0

    @property
    def small_face_split_px(self) -> float:
        """From here regions are read at half resolution (40 px at ``min_face_px`` 10)."""
        return half_resolution_face_px(self.cfg.min_face_px, YUNET_MIN_FACE_PX)

    def _scale(self, height: int, width: int, sizes: FaceSizeRange) -> float:
        return region_input_scale(max(height, width), self.cfg.min_face_px, YUNET_MIN_FACE_PX,
                                  self.cfg.max_input_side_px, sizes.min_px)

    def input_pixels(self, height: int, width: int, sizes: FaceSizeRange) -> int:
        """Pixels of the resized input YuNet reads for a ``height`` x ``width`` region."""
        scale = self._scale(height, width, sizes)
        return max(1, round(width * scale)) * max(1, round(height * scale))

    def _network_input(self, image_bgr: np.ndarray, sizes: FaceSizeRange) -> np.ndarray:
        """The image at the scale ``sizes`` needs (shrunk with INTER_AREA, never enlarged),
        contiguous BGR uint8."""
        height, width = image_bgr.shape[:2]
        scale = self._scale(height, width, sizes)
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            return cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
        return np.ascontiguousarray(image_bgr)

    def _detect_image(self, image_bgr: np.ndarray, sizes: FaceSizeRange) -> FaceArrays:
        height, width = image_bgr.shape[:2]
        image_bgr = self._network_input(image_bgr, sizes)
        in_h, in_w = image_bgr.shape[:2]
        with self._borrow() as net:
            net.setInputSize((in_w, in_h))
            _, faces = net.detect(image_bgr)
        if faces is None or len(faces) == 0:
            return FaceArrays.empty()
        sx, sy = width / in_w, height / in_h
        boxes = np.stack([faces[:, 0], faces[:, 1], faces[:, 0] + faces[:, 2],
                          faces[:, 1] + faces[:, 3]], axis=1) * np.array([sx, sy, sx, sy])
        landmarks = faces[:, 4:14].reshape(-1, 5, 2) * np.array([sx, sy])
        return FaceArrays(boxes.astype(np.float32), faces[:, 14].astype(np.float32),
                          landmarks.astype(np.float32))
