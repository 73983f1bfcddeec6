"""Face alignment: five landmarks -> a square crop framed like the FER2013 / FER+ faces.

The emotion classifier is trained on FER+ (48x48, whole face, tight), so crops are framed the
same way: eyes at about 0.36 of the height, mouth at about 0.75, face filling about 90 % of
the width. A least-squares similarity transform (rotation, uniform scale, translation;
Umeyama 1991) maps the five detected landmarks onto :data:`FER_TEMPLATE_UNIT`. Without
landmarks the crop is a square around the detector box with a small margin.

This is geometry only: enlarging uses bicubic interpolation, shrinking area averaging; face
super-resolution is a separate stage. Crops are BGR uint8 ``(size, size, 3)``.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# Canonical landmark positions as fractions of the crop side, in the records' order: left eye,
# right eye, nose tip, left mouth corner, right mouth corner (as seen in the image). Eye
# spacing 0.34 and mouth width 0.28 keep the ArcFace template's proportions while the eye and
# mouth heights follow FER2013's framing.
FER_TEMPLATE_UNIT = np.array([
    [0.330, 0.360],
    [0.670, 0.360],
    [0.500, 0.555],
    [0.360, 0.750],
    [0.640, 0.750],
], dtype=np.float64)

DEFAULT_BOX_MARGIN_FRACTION = 0.1


def _check_size(crop_size_px: int) -> None:
    if not isinstance(crop_size_px, int) or crop_size_px < 8:
        raise ValueError(f"crop_size_px: expected an int >= 8, got {crop_size_px!r}")


def template_xy(crop_size_px: int) -> np.ndarray:
    """The five template points ``(5, 2)`` in pixels of a ``crop_size_px`` square crop."""
    _check_size(crop_size_px)
    return FER_TEMPLATE_UNIT * crop_size_px


def similarity_transform(src_xy: np.ndarray, dst_xy: np.ndarray) -> np.ndarray:
    """Least-squares similarity ``(2, 3)`` mapping ``src_xy`` onto ``dst_xy`` (Umeyama).

    Reflections are excluded, so a mirrored landmark set is rotated, never flipped.
    """
    src = np.asarray(src_xy, dtype=np.float64)
    dst = np.asarray(dst_xy, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"similarity_transform: expected two matching (N>=2, 2) arrays, got "
                         f"{src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c ** 2).sum() / len(src)
    if src_var < 1e-12:
        raise ValueError("similarity_transform: source points are all the same point")
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1.0
    rotation = u @ sign @ vt
    scale = float(np.trace(np.diag(singular) @ sign) / src_var)
    matrix = np.zeros((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def landmark_transform(landmarks_xy: np.ndarray, crop_size_px: int) -> np.ndarray:
    """The ``(2, 3)`` frame->crop transform that aligns ``landmarks_xy`` to the template."""
    return similarity_transform(np.asarray(landmarks_xy, dtype=np.float64).reshape(5, 2),
                                template_xy(crop_size_px))


def box_transform(bbox_xyxy: tuple[float, float, float, float], crop_size_px: int,
                  margin_fraction: float = DEFAULT_BOX_MARGIN_FRACTION) -> np.ndarray:
    """The ``(2, 3)`` frame->crop transform for a square around the box centre whose side is
    the longer box side grown by ``margin_fraction`` on each side."""
    _check_size(crop_size_px)
    x1, y1, x2, y2 = (float(v) for v in bbox_xyxy)
    side = max(x2 - x1, y2 - y1) * (1.0 + 2.0 * margin_fraction)
    if side <= 0:
        raise ValueError(f"box_transform: expected a box with positive size, got {bbox_xyxy}")
    scale = crop_size_px / side
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    return np.array([[scale, 0.0, crop_size_px / 2.0 - scale * cx],
                     [0.0, scale, crop_size_px / 2.0 - scale * cy]], dtype=np.float64)


def warp_face(image_bgr: np.ndarray, matrix: np.ndarray, crop_size_px: int) -> np.ndarray:
    """Apply a frame->crop similarity: bicubic when enlarging, area-averaged when shrinking.

    Shrinking by more than 2x warps at an integer multiple of the crop size first and then
    averages down, so large faces do not alias.
    """
    scale = math.hypot(matrix[0, 0], matrix[0, 1])
    if scale >= 0.5:
        return cv2.warpAffine(image_bgr, matrix, (crop_size_px, crop_size_px),
                              flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    factor = math.floor(1.0 / scale)
    big = cv2.warpAffine(image_bgr, matrix * factor, (crop_size_px * factor,) * 2,
                         flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.resize(big, (crop_size_px, crop_size_px), interpolation=cv2.INTER_AREA)


def align_face(image_bgr: np.ndarray, crop_size_px: int,
               landmarks_xy: np.ndarray | None = None,
               bbox_xyxy: tuple[float, float, float, float] | None = None,
               margin_fraction: float = DEFAULT_BOX_MARGIN_FRACTION) -> np.ndarray:
    """A square BGR uint8 face crop: landmark-aligned when landmarks are given, else from the
    box. Raises ValueError when neither is given or the image is not BGR uint8."""
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8 \
            or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise ValueError(f"align_face: expected a (H, W, 3) uint8 BGR image, got "
                         f"{getattr(image_bgr, 'shape', type(image_bgr).__name__)} "
                         f"{getattr(image_bgr, 'dtype', '')}")
    if landmarks_xy is not None:
        matrix = landmark_transform(landmarks_xy, crop_size_px)
    elif bbox_xyxy is not None:
        matrix = box_transform(bbox_xyxy, crop_size_px, margin_fraction)
    else:
        raise ValueError("align_face: expected landmarks_xy or bbox_xyxy, got neither")
    return warp_face(image_bgr, matrix, crop_size_px)


def transform_points(matrix: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
    """Map ``(N, 2)`` points with a ``(2, 3)`` affine matrix."""
    points = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    return points @ matrix[:, :2].T + matrix[:, 2]
