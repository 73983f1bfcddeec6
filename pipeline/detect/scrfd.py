"""SCRFD (insightface model packs, e.g. ``det_10g.onnx``, ``det_500m.onnx``) on ONNX Runtime.

Model-pack layout (insightface ``model_zoo/scrfd.py``): one input, RGB, ``(x - 127.5) / 128``,
NCHW; nine outputs, per stride 8/16/32 in that order, first the three score maps
``(K, 1)``, then the three distance maps ``(K, 4)``, then the three keypoint maps ``(K, 10)``,
where ``K = H/stride * W/stride * 2`` rows run over the grid row-major with two anchors per
location. Outputs named ``score_8`` ... ``kps_32`` are matched by name; otherwise that order
is used, and the per-output column counts are checked so a different model fails loudly.
Distances and keypoint offsets are in units of the stride, measured from the anchor centre.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from engines.runtime.graph import GraphSession
from pipeline.config import DetectorConfig
from pipeline.detect.base import Detector, FaceArrays
from pipeline.detect.geometry import half_resolution_face_px, nms, region_input_scale
from pipeline.detect.onnx_session import open_session
from pipeline.detect.scan import FaceSizeRange
from pipeline.errors import ModelError

STRIDES = (8, 16, 32)
ANCHORS_PER_LOCATION = 2
# The stride-8 anchors (16 px base) resolve faces of about 10 px.
SCRFD_MIN_FACE_PX = 10.0
_NAMED_OUTPUT = re.compile(r"^(score|bbox|kps)_(8|16|32)$")
_COLUMNS = {"score": 1, "bbox": 4, "kps": 10}


def anchor_centres(height: int, width: int, stride: int) -> np.ndarray:
    """``(H/s * W/s * 2, 2)`` anchor centres ``(x, y)`` in input pixels, SCRFD's row order."""
    ys, xs = np.mgrid[: height // stride, : width // stride]
    centres = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(centres, ANCHORS_PER_LOCATION, axis=0)


def decode_stride(scores: np.ndarray, distances: np.ndarray, kps: np.ndarray | None,
                  centres: np.ndarray, stride: int, score_threshold: float) -> FaceArrays:
    """Boxes and landmarks of one stride's maps above ``score_threshold``, in input pixels."""
    scores = scores.reshape(-1)
    if scores.shape[0] != centres.shape[0]:
        raise ModelError(f"scrfd stride {stride}: expected {centres.shape[0]} score rows for "
                         f"the input size, got {scores.shape[0]}")
    picked = np.flatnonzero(scores >= score_threshold)
    c = centres[picked]
    d = distances.reshape(-1, 4)[picked] * stride
    boxes = np.stack([c[:, 0] - d[:, 0], c[:, 1] - d[:, 1],
                      c[:, 0] + d[:, 2], c[:, 1] + d[:, 3]], axis=1)
    landmarks = None
    if kps is not None:
        offsets = kps.reshape(-1, 5, 2)[picked] * stride
        landmarks = offsets + c[:, None, :]
    return FaceArrays(boxes.astype(np.float32), scores[picked].astype(np.float32),
                      None if landmarks is None else landmarks.astype(np.float32))


class ScrfdDetector(Detector):
    name = "scrfd"

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__(cfg)
        self._session: GraphSession | None = None
        self._input_name = ""
        self._fixed_hw: tuple[int, int] | None = None
        self._outputs: dict[tuple[str, int], str] = {}

    @property
    def small_face_split_px(self) -> float:
        """From here regions are read at half resolution (40 px at ``min_face_px`` 10)."""
        return half_resolution_face_px(self.cfg.min_face_px, SCRFD_MIN_FACE_PX)

    def _load(self) -> None:
        path = self.cfg.model_path
        if path is None or not path.is_file():
            raise ModelError(f"scrfd model not found: {path}")
        session = open_session(path, self.cfg, varying_input_shape=True)
        inputs = session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ModelError(f"scrfd model {path}: expected one NCHW input, got "
                             f"{[(i.name, i.shape) for i in inputs]}")
        self._input_name = inputs[0].name
        h, w = inputs[0].shape[2:]
        self._fixed_hw = (h, w) if isinstance(h, int) and isinstance(w, int) else None
        self._outputs = self._map_outputs(path, session)
        self._session = session

    @staticmethod
    def _map_outputs(path: Path, session: GraphSession) -> dict[tuple[str, int], str]:
        outputs = session.get_outputs()
        names = [o.name for o in outputs]
        matches = [_NAMED_OUTPUT.match(n) for n in names]
        if all(matches) and len(names) in (6, 9):
            mapping = {(m.group(1), int(m.group(2))): n
                       for m, n in zip(matches, names, strict=True)}
        elif len(names) in (6, 9):
            kinds = ("score", "bbox", "kps")[: len(names) // 3]
            mapping = {(kind, stride): names[k * 3 + s]
                       for k, kind in enumerate(kinds) for s, stride in enumerate(STRIDES)}
        else:
            raise ModelError(f"scrfd model {path}: expected 6 or 9 outputs (score/bbox[/kps] "
                             f"at strides 8, 16, 32), got {len(names)}: {names}")
        shapes = {o.name: o.shape for o in outputs}
        for (kind, stride), name in mapping.items():
            columns = shapes[name][-1]
            if isinstance(columns, int) and columns != _COLUMNS[kind]:
                raise ModelError(f"scrfd model {path}: output {name} ({kind}, stride {stride}) "
                                 f"expected {_COLUMNS[kind]} columns, got {columns}")
        return mapping

    def _unload(self) -> None:
        self._session = None

    def _prepare(self, image_bgr: np.ndarray,
                 sizes: FaceSizeRange) -> tuple[np.ndarray, float]:
        """Letterboxed NCHW blob (image top-left, zero padding) and the image->input scale."""
        height, width = image_bgr.shape[:2]
        if self._fixed_hw is not None:
            in_h, in_w = self._fixed_hw
            scale = min(in_w / width, in_h / height)
        else:
            scale = region_input_scale(max(height, width), self.cfg.min_face_px,
                                       SCRFD_MIN_FACE_PX, self.cfg.max_input_side_px,
                                       sizes.min_px)
        new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
        if self._fixed_hw is None:
            in_w, in_h = -(-new_w // 32) * 32, -(-new_h // 32) * 32
        resized = image_bgr
        if (new_w, new_h) != (width, height):
            interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            resized = cv2.resize(image_bgr, (new_w, new_h), interpolation=interp)
        canvas = np.zeros((in_h, in_w, 3), dtype=np.uint8)
        canvas[:new_h, :new_w] = resized
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / 128.0, (in_w, in_h), (127.5, 127.5, 127.5),
                                     swapRB=True)
        return blob, new_w / width

    def _detect_image(self, image_bgr: np.ndarray, sizes: FaceSizeRange) -> FaceArrays:
        blob, scale = self._prepare(image_bgr, sizes)
        in_h, in_w = blob.shape[2:]
        names = list(self._outputs.values())
        values = dict(zip(names, self._session.run(names, {self._input_name: blob}), strict=True))
        parts = []
        for stride in STRIDES:
            kps_name = self._outputs.get(("kps", stride))
            parts.append(decode_stride(
                values[self._outputs[("score", stride)]], values[self._outputs[("bbox", stride)]],
                None if kps_name is None else values[kps_name],
                anchor_centres(in_h, in_w, stride), stride, self.cfg.score_threshold))
        faces = FaceArrays.concat(parts)
        faces = faces.take(nms(faces.boxes_xyxy, faces.scores, self.cfg.nms_iou))
        landmarks = None if faces.landmarks_xy is None else faces.landmarks_xy / scale
        return FaceArrays(faces.boxes_xyxy / scale, faces.scores, landmarks)
