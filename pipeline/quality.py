"""Face quality in [0, 1]: which crop of a track is worth restoring and classifying.

Three factors, each in [0, 1]:

- **size**: ``face_size_px / target_size_px`` capped at 1; the target (48 px) is the FER+
  input size, above which more pixels no longer help the classifier.
- **sharpness**: variance of the Laplacian of the grey face region (the central 80 % of
  the box), measured at the target size when the face is larger (area-averaged down, so a
  big face is judged by the detail the classifier will see) and at native resolution when
  it is smaller (never enlarged: smallness is the size factor's business, not blur). Mapped
  by ``v / (v + k)`` with ``k = SHARPNESS_HALF_POINT``, the variance that scores 0.5.
  Measured: in-focus photo faces 550-700, the same after a 2.5 px Gaussian blur 45-80,
  Town Centre CCTV faces 100-800.
- **frontalness**: symmetry of the landmarks about the nose along the eye axis: for the eyes
  ``min(a, b) / max(a, b)`` with ``a``, ``b`` the distances from each eye to the nose, the
  same for the mouth corners, averaged. A frontal face scores about 1, a profile 0 (the nose
  passes an eye). Without landmarks it is unknown and scores ``UNKNOWN_FRONTALNESS``.

The score is the weighted geometric mean ``size^0.4 * sharpness^0.3 * frontal^0.3``, so one
bad factor pulls it down no matter how good the others are.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

DEFAULT_TARGET_SIZE_PX = 48.0
SHARPNESS_HALF_POINT = 100.0
UNKNOWN_FRONTALNESS = 0.5
WEIGHT_SIZE, WEIGHT_SHARPNESS, WEIGHT_FRONTAL = 0.4, 0.3, 0.3
_FLOOR = 1e-3  # keeps a zero factor from hiding how the other factors compare


@dataclass(frozen=True)
class FaceQuality:
    """The combined score and its three factors, all in [0, 1]."""

    score: float
    size_score: float
    sharpness_score: float
    frontal_score: float


def size_score(face_size_px: float, target_size_px: float = DEFAULT_TARGET_SIZE_PX) -> float:
    return float(np.clip(face_size_px / target_size_px, 0.0, 1.0))


def sharpness_score(face_bgr: np.ndarray,
                    target_size_px: float = DEFAULT_TARGET_SIZE_PX) -> float:
    """Normalised variance of the Laplacian of a face region (BGR or grey, uint8)."""
    if face_bgr.size == 0:
        return 0.0
    grey = cv2.cvtColor(face_bgr, cv2.COLOR_BGR2GRAY) if face_bgr.ndim == 3 else face_bgr
    shorter = min(grey.shape[:2])
    if shorter > target_size_px:
        factor = target_size_px / shorter
        size = (max(1, round(grey.shape[1] * factor)), max(1, round(grey.shape[0] * factor)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    variance = float(cv2.Laplacian(grey, cv2.CV_64F).var())
    return variance / (variance + SHARPNESS_HALF_POINT)


def frontal_score(landmarks_xy: np.ndarray | None) -> float:
    """Symmetry of eyes and mouth corners about the nose (records' landmark order)."""
    if landmarks_xy is None:
        return UNKNOWN_FRONTALNESS
    points = np.asarray(landmarks_xy, dtype=np.float64).reshape(5, 2)
    left_eye, right_eye, nose, left_mouth, right_mouth = points
    axis = right_eye - left_eye
    length = float(np.hypot(*axis))
    if length < 1e-6:
        return 0.0
    axis /= length

    def symmetry(left: np.ndarray, right: np.ndarray) -> float:
        a = float((nose - left) @ axis)
        b = float((right - nose) @ axis)
        if a <= 0 or b <= 0:
            return 0.0
        return min(a, b) / max(a, b)

    return 0.5 * (symmetry(left_eye, right_eye) + symmetry(left_mouth, right_mouth))


def face_region(image_bgr: np.ndarray, bbox_xyxy: tuple[float, float, float, float],
                inner_fraction: float = 0.8) -> np.ndarray:
    """The central ``inner_fraction`` of the box (skips background at the box edges)."""
    x1, y1, x2, y2 = bbox_xyxy
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half_w, half_h = (x2 - x1) * inner_fraction / 2, (y2 - y1) * inner_fraction / 2
    height, width = image_bgr.shape[:2]
    left, top = max(0, round(cx - half_w)), max(0, round(cy - half_h))
    right, bottom = min(width, round(cx + half_w)), min(height, round(cy + half_h))
    return image_bgr[top:bottom, left:right]


def assess_face(image_bgr: np.ndarray, bbox_xyxy: tuple[float, float, float, float],
                landmarks_xy: np.ndarray | None = None,
                target_size_px: float = DEFAULT_TARGET_SIZE_PX) -> FaceQuality:
    """Quality of the face at ``bbox_xyxy`` in a frame (pixels) with its three factors."""
    x1, y1, x2, y2 = bbox_xyxy
    size = size_score(min(x2 - x1, y2 - y1), target_size_px)
    sharp = sharpness_score(face_region(image_bgr, bbox_xyxy), target_size_px)
    frontal = frontal_score(landmarks_xy)
    score = (max(size, _FLOOR) ** WEIGHT_SIZE * max(sharp, _FLOOR) ** WEIGHT_SHARPNESS
             * max(frontal, _FLOOR) ** WEIGHT_FRONTAL)
    return FaceQuality(score=float(score), size_score=size, sharpness_score=sharp,
                       frontal_score=frontal)


def face_quality(image_bgr: np.ndarray, bbox_xyxy: tuple[float, float, float, float],
                 landmarks_xy: np.ndarray | None = None,
                 target_size_px: float = DEFAULT_TARGET_SIZE_PX) -> float:
    """The combined quality in [0, 1] of the face at ``bbox_xyxy`` (see the module docstring)."""
    return assess_face(image_bgr, bbox_xyxy, landmarks_xy, target_size_px).score
