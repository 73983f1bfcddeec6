"""Geometric and photometric training augmentation for face crops (numpy / cv2)."""

from __future__ import annotations

import cv2
import numpy as np


def random_affine(image: np.ndarray, rng: np.random.Generator, rotate_deg: float,
                  scale_range: tuple[float, float], shift_frac: float) -> np.ndarray:
    """Random rotation, scale and shift about the centre; borders replicate the edge pixels."""
    h, w = image.shape[:2]
    angle = rng.uniform(-rotate_deg, rotate_deg)
    scale = rng.uniform(*scale_range)
    mat = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), angle, scale)
    mat[0, 2] += rng.uniform(-shift_frac, shift_frac) * w
    mat[1, 2] += rng.uniform(-shift_frac, shift_frac) * h
    return cv2.warpAffine(image, mat, (w, h), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def random_photometric(image: np.ndarray, rng: np.random.Generator, brightness: float,
                       contrast: float) -> np.ndarray:
    """Random brightness (additive, fraction of 255) and contrast (multiplicative) jitter."""
    if brightness <= 0 and contrast <= 0:
        return image
    img = image.astype(np.float32)
    mean = float(img.mean())
    c = 1.0 + rng.uniform(-contrast, contrast)
    b = rng.uniform(-brightness, brightness) * 255.0
    return np.clip((img - mean) * c + mean + b, 0, 255).astype(np.uint8)


def random_erase(batch: np.ndarray, rng: np.random.Generator, prob: float,
                 area_range: tuple[float, float] = (0.02, 0.15)) -> None:
    """In-place random erasing on a normalised (N, C, H, W) batch (fills with zeros = mean)."""
    n, _, h, w = batch.shape
    for i in range(n):
        if rng.random() >= prob:
            continue
        area = rng.uniform(*area_range) * h * w
        aspect = np.exp(rng.uniform(np.log(0.3), np.log(3.3)))
        eh = int(min(h, round(np.sqrt(area * aspect))))
        ew = int(min(w, round(np.sqrt(area / aspect))))
        y = int(rng.integers(0, h - eh + 1))
        x = int(rng.integers(0, w - ew + 1))
        batch[i, :, y:y + eh, x:x + ew] = 0.0
