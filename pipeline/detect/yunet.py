"""YuNet (OpenCV Zoo, ``face_detection_yunet_*.onnx``) run as an ONNX graph on
``detector.runtime`` (ONNX Runtime on the CPU by default) and decoded here as OpenCV's
``cv2.FaceDetectorYN`` decodes it (``modules/objdetect/src/face_detect.cpp``).

The graph's input is the BGR image as float ``0..255`` NCHW, padded at the bottom and right to
a multiple of 32; per stride 8, 16, 32 there are ``cls_S`` and ``obj_S`` ``(H/S * W/S, 1)``
scores, ``bbox_S`` ``(., 4)`` as centre offsets in cells and log sizes, ``kps_S`` ``(., 10)``
as five ``(x, y)`` offsets in cells; the score is ``sqrt(clip(cls) * clip(obj))``.

Why not ``cv2.FaceDetectorYN`` itself: on the same 1080p Town Centre frames, one thread, it
took 93.5 ms per frame against 38.8 ms here (OpenCV 5.0's DNN engine against ONNX Runtime),
with the same faces (boxes within 1e-4 px, scores within 1e-6; docs/RESULTS.md, "Live
capacity", 2026-12-01 session 6). ``tests/test_detect_backends.py`` keeps it as the reference.
Two small departures from it: NMS runs on the float boxes (OpenCV rounds them to whole pixels
first, which can flip a pair right at the IoU threshold), and there is no cap on the
candidates before NMS (OpenCV's ``top_k``, 5000 here before).
"""

from __future__ import annotations

import cv2
import numpy as np

from engines.runtime.graph import GraphSession
from pipeline.config import DetectorConfig
from pipeline.detect.base import Detector, FaceArrays
from pipeline.detect.geometry import half_resolution_face_px, nms, region_input_scale
from pipeline.detect.onnx_session import open_session
from pipeline.detect.scan import FaceSizeRange
from pipeline.errors import ModelError

# YuNet's smallest anchors resolve faces of about 10 px.
YUNET_MIN_FACE_PX = 10.0
STRIDES = (8, 16, 32)
PAD_DIVISOR = 32
_COLUMNS = {"cls": 1, "obj": 1, "bbox": 4, "kps": 10}
_KINDS = tuple(_COLUMNS)
OUTPUT_NAMES = tuple(f"{kind}_{stride}" for kind in _KINDS for stride in STRIDES)


def _rows(outputs: dict[str, np.ndarray], kind: str, stride: int, count: int) -> np.ndarray:
    value = outputs[f"{kind}_{stride}"]
    if value.size != count * _COLUMNS[kind]:
        raise ModelError(f"yunet {kind}_{stride}: expected {count} x {_COLUMNS[kind]} values "
                         f"for the input size, got shape {value.shape}")
    return value.reshape(count, _COLUMNS[kind])


def decode_yunet(outputs: dict[str, np.ndarray], in_h: int, in_w: int,
                 score_threshold: float) -> FaceArrays:
    """Faces above ``score_threshold`` from YuNet's twelve outputs (by name) for an
    ``in_h`` x ``in_w`` input (multiples of 32), in input px, before NMS; landmarks are the
    image-left eye first (the records' order). Raises ModelError when an output's row count
    does not fit the input size."""
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


class YunetDetector(Detector):
    """YuNet on one graph session shared by every calling thread (ONNX Runtime sessions are
    safe to run from several threads); each concurrent call holds its own activations, about
    130 MB at a 1080p input, so at most one per CPU core runs at a time
    (:meth:`Detector._network_slot`)."""

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
        if not set(OUTPUT_NAMES) <= names:
            raise ModelError(f"yunet model {path}: expected outputs {sorted(OUTPUT_NAMES)}, "
                             f"got {sorted(names)}")
        self._input_name = session.get_inputs()[0].name
        self._session = session

    def _unload(self) -> None:
        self._session = None

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
        """The image at the scale ``sizes`` needs (shrunk with INTER_AREA, never enlarged)."""
        height, width = image_bgr.shape[:2]
        scale = self._scale(height, width, sizes)
        if scale < 1.0:
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            return cv2.resize(image_bgr, size, interpolation=cv2.INTER_AREA)
        return image_bgr

    def _detect_image(self, image_bgr: np.ndarray, sizes: FaceSizeRange) -> FaceArrays:
        height, width = image_bgr.shape[:2]
        image_bgr = self._network_input(image_bgr, sizes)
        in_h, in_w = image_bgr.shape[:2]
        pad_h = -(-in_h // PAD_DIVISOR) * PAD_DIVISOR
        pad_w = -(-in_w // PAD_DIVISOR) * PAD_DIVISOR
        blob = np.zeros((1, 3, pad_h, pad_w), dtype=np.float32)
        blob[0, :, :in_h, :in_w] = image_bgr.transpose(2, 0, 1)
        values = self._session.run(list(OUTPUT_NAMES), {self._input_name: blob})
        faces = decode_yunet(dict(zip(OUTPUT_NAMES, values, strict=True)), pad_h, pad_w,
                             self.cfg.score_threshold)
        faces = faces.take(nms(faces.boxes_xyxy, faces.scores, self.cfg.nms_iou))
        sx, sy = width / in_w, height / in_h
        return FaceArrays(faces.boxes_xyxy * np.array([sx, sy, sx, sy], dtype=np.float32),
                          faces.scores,
                          faces.landmarks_xy * np.array([sx, sy], dtype=np.float32))
