"""Non-face crops for the classifier's ``not_face`` output, mined from real CCTV clips.

Three kinds, all cut from decoded frames of a clip and resized to the model input the way the
pipeline resizes a detector crop (INTER_AREA to shrink, bilinear to enlarge):

- ``detector``: boxes of at least ``DETECTOR_NEGATIVE_MIN_PX`` that the pipeline's default
  detector (MTCNN, score >= 0.5) fires on and that no YuNet box (score >= 0.3, a sensitive
  second opinion) overlaps: hands, signs, bags, backs of heads. These are the false
  positives the pipeline must drop. The YuNet check is not proof: YuNet misses about 1 in 40
  real faces at 16 px and 1 in 5 at 12 px (docs/RESULTS.md), hence the size floor; a real
  face it misses above the floor can still end up here (about 1 % of the non-face samples
  are of this kind).
- ``near``: squares beside, below and above faces (shoulders, torsos, hair), the hardest
  background;
- ``random``: squares of 10-64 px anywhere.

``near`` and ``random`` squares that overlap a YuNet face box (grown by half its size) are
never taken, so the faces YuNet sees are not labelled ``not_face``. Frame ranges let training
and evaluation use disjoint parts of a clip. Cached on disk.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)
NONFACE_VERSION = 2  # 2: detector negatives need DETECTOR_NEGATIVE_MIN_PX
DETECTOR_NEGATIVE_MIN_PX = 16.0


@dataclass(frozen=True)
class NonFaceSource:
    """One clip and the frames to mine: ``range(start, stop, step)``."""

    clip: Path
    start: int
    stop: int
    step: int = 4


def _decode(clip: Path, start: int, stop: int, step: int) -> list[tuple[int, np.ndarray]]:
    import av

    frames = []
    with av.open(str(clip)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i >= stop:
                break
            if i >= start and (i - start) % step == 0:
                frames.append((i, frame.to_ndarray(format="bgr24")))
    return frames


def _overlaps(box: tuple[float, float, float, float], faces: np.ndarray, grow: float) -> bool:
    if len(faces) == 0:
        return False
    x1, y1, x2, y2 = box
    w = faces[:, 2] - faces[:, 0]
    h = faces[:, 3] - faces[:, 1]
    fx1, fy1 = faces[:, 0] - grow * w, faces[:, 1] - grow * h
    fx2, fy2 = faces[:, 2] + grow * w, faces[:, 3] + grow * h
    return bool(np.any((x1 < fx2) & (x2 > fx1) & (y1 < fy2) & (y2 > fy1)))


def _cut(gray: np.ndarray, x: float, y: float, side: float, out_px: int) -> np.ndarray | None:
    from engines.preprocess import resize_face

    h, w = gray.shape
    x1, y1 = round(x), round(y)
    s = round(side)
    if s < 4 or x1 < 0 or y1 < 0 or x1 + s > w or y1 + s > h:
        return None
    return resize_face(gray[y1:y1 + s, x1:x1 + s], (out_px, out_px))


def _detectors(yunet_model: Path):
    from pipeline.config import DetectorConfig
    from pipeline.detect.factory import create_detector

    yunet = create_detector(DetectorConfig(backend="yunet", model_path=yunet_model,
                                           score_threshold=0.3, min_face_px=6))
    mtcnn = create_detector(DetectorConfig(backend="mtcnn", score_threshold=0.5,
                                           min_face_px=8))
    yunet.start()
    mtcnn.start()
    return yunet, mtcnn


def mine_nonfaces(sources: list[NonFaceSource], yunet_model: Path, per_frame_random: int,
                  per_frame_near: int, seed: int, out_px: int = 48,
                  cache_dir: Path | None = None) -> dict[str, np.ndarray]:
    """Return ``{"detector": (N, out_px, out_px), "near": ..., "random": ...}`` gray uint8."""
    key = hashlib.sha256(repr((
        [(s.clip.name, s.clip.stat().st_size, s.start, s.stop, s.step) for s in sources],
        per_frame_random, per_frame_near, seed, out_px, NONFACE_VERSION)).encode()).hexdigest()
    cache = Path(cache_dir) / f"nonface_{key[:16]}.npz" if cache_dir else None
    if cache is not None and cache.is_file():
        z = np.load(cache, allow_pickle=False)
        return {k: z[k] for k in z.files}
    rng = np.random.default_rng(seed)
    yunet, mtcnn = _detectors(yunet_model)
    out: dict[str, list[np.ndarray]] = {"detector": [], "near": [], "random": []}
    try:
        for src in sources:
            for _, bgr in _decode(src.clip, src.start, src.stop, src.step):
                gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
                h, w = gray.shape
                faces = np.asarray([d.bbox_xyxy for d in yunet.detect(bgr)],
                                   np.float32).reshape(-1, 4)
                for d in mtcnn.detect(bgr):
                    x1, y1, x2, y2 = d.bbox_xyxy
                    side = max(x2 - x1, y2 - y1)
                    box = (x1, y1, x1 + side, y1 + side)
                    if side >= DETECTOR_NEGATIVE_MIN_PX and not _overlaps(box, faces, 0.0):
                        crop = _cut(gray, x1, y1, side, out_px)
                        if crop is not None:
                            out["detector"].append(crop)
                for fx1, fy1, fx2, fy2 in faces[:per_frame_near]:
                    side = max(fx2 - fx1, fy2 - fy1) * rng.uniform(0.8, 1.5)
                    dx, dy = [(0, 1.6), (0, 2.6), (-1.4, 0.8), (1.4, 0.8), (0, -1.3)][
                        int(rng.integers(5))]
                    x, y = fx1 + dx * side, fy1 + dy * side
                    if not _overlaps((x, y, x + side, y + side), faces, 0.5):
                        crop = _cut(gray, x, y, side, out_px)
                        if crop is not None:
                            out["near"].append(crop)
                taken = 0
                for _ in range(per_frame_random * 4):
                    if taken >= per_frame_random:
                        break
                    side = math.exp(rng.uniform(math.log(10), math.log(64)))
                    x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
                    if _overlaps((x, y, x + side, y + side), faces, 0.5):
                        continue
                    crop = _cut(gray, x, y, side, out_px)
                    if crop is not None:
                        out["random"].append(crop)
                        taken += 1
    finally:
        yunet.stop()
        mtcnn.stop()
    result = {k: (np.stack(v) if v else np.zeros((0, out_px, out_px), np.uint8))
              for k, v in out.items()}
    log.info("non-face crops: %s", {k: len(v) for k, v in result.items()})
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npz")
        np.savez(tmp, **result)
        os.replace(tmp, cache)
    return result
