"""YuNet's ONNX graph on ``detector.runtime`` (e.g. torch on CUDA), decoded here.

OpenCV's ``cv2.FaceDetectorYN`` (pipeline/detect/yunet.py) runs the graph on the CPU only.
This backend runs the same file through engines/runtime/graph.py and decodes its outputs as
OpenCV does (``modules/objdetect/src/face_detect.cpp``): the input is the BGR image as float
``0..255`` NCHW, padded at the bottom and right to a multiple of 32; per stride 8, 16, 32 there
are ``cls_S`` and ``obj_S`` ``(H/S * W/S, 1)`` scores, ``bbox_S`` ``(., 4)`` as centre offsets
in cells and log sizes, ``kps_S`` ``(., 10)`` as five ``(x, y)`` offsets in cells; the score is
``sqrt(clip(cls) * clip(obj))``. The factory picks it when ``detector.runtime`` is not the
default (ONNX Runtime on the CPU), so a default config keeps OpenCV's results bit for bit.
"""

from __future__ import annotations

import numpy as np

from engines.runtime.graph import GraphSession
from pipeline.config import DetectorConfig
from pipeline.detect.base import FaceArrays
from pipeline.detect.geometry import nms
from pipeline.detect.onnx_session import open_session
from pipeline.detect.scan import FaceSizeRange
from pipeline.detect.yunet import YunetDetector
from pipeline.errors import ModelError

STRIDES = (8, 16, 32)
PAD_DIVISOR = 32
_COLUMNS = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
_KINDS = tuple(_COLUMNS)


def _rows(outputs: dict[str, np.ndarray], kind: str, stride: int, count: int) -> np.ndarray:
    value = outputs[f"{kind}_{stride}"]
    if value.size != count * _COLUMNS[kind]:
        raise ModelError(f"yunet {kind}_{stride}: expected {count} x {_COLUMNS[kind]} values "
                         f"for the input size, got shape {value.shape}")
    return value.reshape(count, _COLUMNS[kind])


def decode_yunet(outputs: dict[str, np.ndarray], in_h: int, in_w: int,
                 score_threshold: float) -> FaceArrays:
    """Faces above ``score_threshold`` from YuNet's twelve outputs (by name), in input px,
    before NMS. Raises ModelError when an output's row count does not fit the input size."""
    parts = []
    for stride in STRIDES:
        rows, cols = in_h // stride, in_w // stride
        cls, obj, bbox, kps = (_rows(outputs, kind, stride, rows * cols) for kind in _KINDS)
        score = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
        picked = np.flatnonzero(score >= score_threshold)
        cy, cx = np.divmod(picked, cols)
        b = bbox[picked]
        centre_x, centre_y = (cx + b[:, 0]) * stride, (cy + b[:, 1]) * stride
        w, h = np.exp(b[:, 2]) * stride, np.exp(b[:, 3]) * stride
        boxes = np.stack([centre_x - w / 2, centre_y - h / 2, centre_x + w / 2,
                          centre_y + h / 2], axis=1)
        points = kps[picked].reshape(-1, 5, 2)
        landmarks = (points + np.stack([cx, cy], axis=1)[:, None, :]) * stride
        parts.append(FaceArrays(boxes.astype(np.float32), score[picked].astype(np.float32),
                                landmarks.astype(np.float32)))
    return FaceArrays.concat(parts)


class YunetGraphDetector(YunetDetector):
    """YuNet through a graph session on ``detector.runtime``; sizes and scales as
    :class:`YunetDetector`. The session is shared by every calling thread."""

    name = "yunet"

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__(cfg)
        self._session: GraphSession | None = None
        self._input_name = ""

    def _load(self) -> None:
        path = self.cfg.model_path
        if path is None or not path.is_file():
            raise ModelError(f"yunet model not found: {path}")
        session = open_session(path, self.cfg, varying_input_shape=True)
        names = {o.name for o in session.get_outputs()}
        wanted = {f"{kind}_{stride}" for kind in _KINDS for stride in STRIDES}
        if not wanted <= names:
            raise ModelError(f"yunet model {path}: expected outputs {sorted(wanted)}, got "
                             f"{sorted(names)}")
        self._input_name = session.get_inputs()[0].name
        self._session = session

    def _unload(self) -> None:
        self._session = None

    def _detect_image(self, image_bgr: np.ndarray, sizes: FaceSizeRange) -> FaceArrays:
        height, width = image_bgr.shape[:2]
        image_bgr = self._network_input(image_bgr, sizes)
        in_h, in_w = image_bgr.shape[:2]
        pad_h = -(-in_h // PAD_DIVISOR) * PAD_DIVISOR
        pad_w = -(-in_w // PAD_DIVISOR) * PAD_DIVISOR
        blob = np.zeros((1, 3, pad_h, pad_w), dtype=np.float32)
        blob[0, :, :in_h, :in_w] = image_bgr.transpose(2, 0, 1)
        names = [f"{kind}_{stride}" for kind in _KINDS for stride in STRIDES]
        values = dict(zip(names, self._session.run(names, {self._input_name: blob}), strict=True))
        faces = decode_yunet(values, pad_h, pad_w, self.cfg.score_threshold)
        faces = faces.take(nms(faces.boxes_xyxy, faces.scores, self.cfg.nms_iou))
        sx, sy = width / in_w, height / in_h
        return FaceArrays(faces.boxes_xyxy * np.array([sx, sy, sx, sy], dtype=np.float32),
                          faces.scores,
                          faces.landmarks_xy * np.array([sx, sy], dtype=np.float32))
