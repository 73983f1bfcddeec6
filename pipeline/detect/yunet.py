"""YuNet (OpenCV Zoo) through ``cv2.FaceDetectorYN``; the model file is given by path."""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.config import DetectorConfig
from pipeline.detect.base import Detector, FaceArrays
from pipeline.detect.geometry import input_scale
from pipeline.errors import ModelError

# YuNet's smallest anchors resolve faces of about 10 px.
YUNET_MIN_FACE_PX = 10.0
# cv2 returns landmarks as the *person's* right eye, left eye, nose, right and left mouth
# corner: image-left first, which already is the records' order (left/right as seen).
_TOP_K = 5000


class YunetDetector(Detector):
    """``cv2.FaceDetectorYN``; note ``cv2.setNumThreads`` is process-wide."""

    name = "yunet"

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__(cfg)
        self._net: cv2.FaceDetectorYN | None = None

    def _load(self) -> None:
        path = self.cfg.model_path
        if path is None or not path.is_file():
            raise ModelError(f"yunet model not found: {path}")
        cv2.setNumThreads(self.cfg.threads)
        try:
            self._net = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), score_threshold=self.cfg.score_threshold,
                nms_threshold=self.cfg.nms_iou, top_k=_TOP_K)
        except cv2.error as err:
            raise ModelError(f"cannot load yunet model {path}: {err}") from err

    def _unload(self) -> None:
        self._net = None

    def _detect_image(self, image_bgr: np.ndarray) -> FaceArrays:
        height, width = image_bgr.shape[:2]
        scale = input_scale(max(height, width), self.cfg.min_face_px, YUNET_MIN_FACE_PX,
                            self.cfg.max_input_side_px)
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image_bgr = cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
        else:
            image_bgr = np.ascontiguousarray(image_bgr)
        in_h, in_w = image_bgr.shape[:2]
        self._net.setInputSize((in_w, in_h))
        _, faces = self._net.detect(image_bgr)
        if faces is None or len(faces) == 0:
            return FaceArrays.empty()
        sx, sy = width / in_w, height / in_h
        boxes = np.stack([faces[:, 0], faces[:, 1], faces[:, 0] + faces[:, 2],
                          faces[:, 1] + faces[:, 3]], axis=1) * np.array([sx, sy, sx, sy])
        landmarks = faces[:, 4:14].reshape(-1, 5, 2) * np.array([sx, sy])
        return FaceArrays(boxes.astype(np.float32), faces[:, 14].astype(np.float32),
                          landmarks.astype(np.float32))
