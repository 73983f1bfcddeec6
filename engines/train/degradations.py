"""CCTV-style face degradations as plain numpy / cv2 functions.

Shared by emotion training (degradation-aware augmentation), emotion evaluation (accuracy by
face size) and the SR work (making low-resolution inputs). Every function takes and returns a
uint8 image (``(H, W)`` gray or ``(H, W, 3)`` colour) and draws randomness only from the
``numpy.random.Generator`` it is given, so results are reproducible from a seed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

RestoreFn = Callable[[np.ndarray, tuple[int, int]], np.ndarray]

_INTERPOLATIONS = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
}
RESTORE_METHODS = ("bilinear", "bicubic", "nearest")


def downscale(image: np.ndarray, size_px: int) -> np.ndarray:
    """Antialiased downscale (``cv2.INTER_AREA``) so the longer side is ``size_px``."""
    h, w = image.shape[:2]
    scale = size_px / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    if (new_h, new_w) == (h, w):
        return image.copy()
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA)


def restore(image: np.ndarray, size_hw: tuple[int, int], method: str | RestoreFn) -> np.ndarray:
    """Bring a small face back to ``size_hw`` by interpolation name or by a callable (SR model)."""
    if callable(method):
        out = method(image, size_hw)
        if out.shape[:2] != tuple(size_hw):
            raise ValueError(f"restore: expected output size {tuple(size_hw)}, got {out.shape[:2]}")
        return out
    if method not in RESTORE_METHODS:
        raise ValueError(f"restore: expected one of {RESTORE_METHODS}, got {method!r}")
    h, w = size_hw
    if image.shape[:2] == (h, w):
        return image.copy()
    return cv2.resize(image, (w, h), interpolation=_INTERPOLATIONS[method])


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return image.copy()
    return cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)


def gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Additive Gaussian noise, ``sigma`` in 0-255 intensity units."""
    if sigma <= 0:
        return image.copy()
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through JPEG at ``quality`` (1-100) to add block and ringing artefacts."""
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("jpeg: cv2.imencode failed")
    flag = cv2.IMREAD_GRAYSCALE if image.ndim == 2 else cv2.IMREAD_COLOR
    return cv2.imdecode(buf, flag)


@dataclass(frozen=True)
class DegradationParams:
    """Ranges for :func:`random_degrade`. Sizes in pixels of the longer face side."""

    min_size_px: int = 10
    max_size_px: int = 48
    blur_prob: float = 0.3
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    noise_prob: float = 0.3
    noise_sigma: tuple[float, float] = (1.0, 8.0)
    jpeg_prob: float = 0.3
    jpeg_quality: tuple[int, int] = (30, 90)
    restore_methods: tuple[str, ...] = ("bilinear", "bicubic")


def random_degrade(image: np.ndarray, rng: np.random.Generator, params: DegradationParams,
                   out_size_hw: tuple[int, int] | None = None,
                   restore_fn: RestoreFn | None = None) -> np.ndarray:
    """Simulate a CCTV face: blur, downscale to a random size, noise, JPEG, restore.

    Blur is applied before the downscale (optics / motion), noise and JPEG at the low
    resolution (sensor and codec), then the face is restored to ``out_size_hw`` (default:
    the input size) with a random method from ``params.restore_methods`` or ``restore_fn``.
    Sizes are drawn log-uniformly so very small faces are well represented.
    """
    h, w = image.shape[:2]
    out_hw = out_size_hw or (h, w)
    lo, hi = np.log(params.min_size_px), np.log(params.max_size_px)
    size = round(np.exp(rng.uniform(lo, hi)))
    img = image
    if rng.random() < params.blur_prob:
        # Blur sigma is in low-res pixels; scale it to the current resolution.
        img = gaussian_blur(img, rng.uniform(*params.blur_sigma) * max(h, w) / size)
    img = downscale(img, size)
    if rng.random() < params.noise_prob:
        img = gaussian_noise(img, rng.uniform(*params.noise_sigma), rng)
    if rng.random() < params.jpeg_prob:
        img = jpeg(img, int(rng.integers(params.jpeg_quality[0], params.jpeg_quality[1] + 1)))
    method: str | RestoreFn = restore_fn or params.restore_methods[
        int(rng.integers(len(params.restore_methods)))]
    return restore(img, out_hw, method)


def degrade_to_size(image: np.ndarray, size_px: int, method: str | RestoreFn,
                    out_size_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Deterministic evaluation degradation: INTER_AREA downscale then restore."""
    out_hw = out_size_hw or image.shape[:2]
    return restore(downscale(image, size_px), out_hw, method)
