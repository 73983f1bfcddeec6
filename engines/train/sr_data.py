"""Self-supervised SR pairs: every low-resolution face is its own ground truth (ZSSR-style).

A source face (any size) becomes ground truth at one of ``hr_sizes`` (only sizes it can give
without upsampling), is downscaled by ``scale`` with antialiased bicubic to make the input,
and gets exactly one random augmentation: a 90/180/270 degree rotation (applied to the pair),
or Gaussian noise, Gaussian blur or JPEG artefacts (applied to the input only, so the
generator learns to undo them instead of reproducing them). Randomness comes only from the
``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engines.train.degradations import gaussian_blur, gaussian_noise, jpeg

log = logging.getLogger("engines.train.sr")
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def _cubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    return np.where(x <= 1, ((a + 2) * x - (a + 3)) * x * x + 1,
                    np.where(x < 2, ((a * x - 5 * a) * x + 8 * a) * x - 4 * a, 0.0))


def _resize_weights(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) antialiased bicubic weights (PIL / MATLAB imresize convention)."""
    scale = n_in / n_out
    support = 2.0 * max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    idx = np.arange(n_in)
    dist = (idx[None, :] + 0.5 - centres[:, None]) / max(scale, 1.0)
    w = _cubic(dist) * (np.abs(idx[None, :] + 0.5 - centres[:, None]) < support)
    w /= w.sum(axis=1, keepdims=True)
    return w.astype(np.float32)


def resize_bicubic_aa(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Antialiased bicubic resize of a uint8 ``(H, W)`` or ``(H, W, C)`` image.

    When shrinking, the bicubic kernel is stretched by the scale factor (as PIL and MATLAB
    ``imresize`` do), so it low-passes before sampling; this is the "bicubic, antialiased"
    downscale of the SR evaluation and of the training pairs.
    """
    h, w = image.shape[:2]
    th, tw = size_hw
    if (h, w) == (th, tw):
        return image.copy()
    wy, wx = _resize_weights(h, th), _resize_weights(w, tw)
    img = image.astype(np.float32)
    if img.ndim == 2:
        out = wy @ img @ wx.T
    else:
        out = np.einsum("ih,hwc,jw->ijc", wy, img, wx, optimize=True)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def center_square(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    side = min(h, w)
    y0, x0 = (h - side) // 2, (w - side) // 2
    return image[y0:y0 + side, x0:x0 + side]


def to_hr(image: np.ndarray, hr_size: int) -> np.ndarray:
    """Centre square, then antialiased bicubic downscale to ``hr_size`` (never upscales)."""
    sq = center_square(image)
    if sq.shape[0] < hr_size:
        raise ValueError(f"to_hr: expected a face of at least {hr_size} px, got {sq.shape[0]}")
    return resize_bicubic_aa(sq, (hr_size, hr_size))


@dataclass(frozen=True)
class PairParams:
    scale: int = 4
    augmentations: tuple[str, ...] = ("rot90", "rot180", "rot270", "noise", "blur", "jpeg")
    noise_sigma: tuple[float, float] = (1.0, 6.0)
    blur_sigma: tuple[float, float] = (0.3, 0.9)
    jpeg_quality: tuple[int, int] = (40, 90)


def make_pair(image: np.ndarray, hr_size: int, params: PairParams, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray, str]:
    """One (lr, hr, augmentation) training pair from one face; exactly one augmentation."""
    if hr_size % params.scale:
        raise ValueError(f"make_pair: expected hr_size divisible by scale {params.scale}, "
                         f"got {hr_size}")
    hr = to_hr(image, hr_size)
    aug = params.augmentations[int(rng.integers(len(params.augmentations)))] \
        if params.augmentations else "none"
    if aug.startswith("rot"):
        hr = np.ascontiguousarray(np.rot90(hr, k=int(aug[3:]) // 90))
    lr_size = hr_size // params.scale
    lr = resize_bicubic_aa(hr, (lr_size, lr_size))
    if aug == "noise":
        lr = gaussian_noise(lr, float(rng.uniform(*params.noise_sigma)), rng)
    elif aug == "blur":
        lr = gaussian_blur(lr, float(rng.uniform(*params.blur_sigma)))
    elif aug == "jpeg":
        lr = jpeg(lr, int(rng.integers(params.jpeg_quality[0], params.jpeg_quality[1] + 1)))
    return lr, hr, aug


class FaceBank:
    """Source faces of mixed sizes, indexed by which ground-truth sizes each can give."""

    def __init__(self, images: Sequence[np.ndarray], hr_sizes: Sequence[int]) -> None:
        if not images:
            raise ValueError("FaceBank: expected at least one face image, got none")
        self.images = list(images)
        sides = np.asarray([min(img.shape[:2]) for img in self.images])
        self.by_size = {int(s): np.flatnonzero(sides >= s) for s in hr_sizes}
        self.by_size = {s: idx for s, idx in self.by_size.items() if len(idx)}
        if not self.by_size:
            raise ValueError(f"FaceBank: no face is as large as any hr size {list(hr_sizes)} "
                             f"(largest side {int(sides.max())} px)")

    def __len__(self) -> int:
        return len(self.images)

    def sample_batch(self, batch_size: int, params: PairParams, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
        """A batch of one ground-truth size (drawn in proportion to the eligible faces)."""
        sizes = sorted(self.by_size)
        counts = np.asarray([len(self.by_size[s]) for s in sizes], dtype=np.float64)
        hr_size = sizes[int(rng.choice(len(sizes), p=counts / counts.sum()))]
        idx = rng.choice(self.by_size[hr_size], size=batch_size,
                         replace=len(self.by_size[hr_size]) < batch_size)
        lrs, hrs, augs = [], [], []
        for i in idx:
            lr, hr, aug = make_pair(self.images[int(i)], hr_size, params, rng)
            lrs.append(lr)
            hrs.append(hr)
            augs.append(aug)
        return np.stack(lrs), np.stack(hrs), hr_size, augs


def read_image(path: Path, color: str) -> np.ndarray | None:
    flag = cv2.IMREAD_GRAYSCALE if color == "gray" else cv2.IMREAD_COLOR
    img = cv2.imread(str(path), flag)
    if img is not None and color == "rgb":
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def load_image_dir(folder: Path, color: str, limit: int | None = None) -> list[np.ndarray]:
    """Every readable image under ``folder`` (recursive, sorted), in the model colour."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected a folder of face images, got none")
    out = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in IMAGE_EXTS:
            continue
        img = read_image(p, color)
        if img is None:
            log.warning("skipping unreadable image %s", p)
            continue
        out.append(img)
        if limit is not None and len(out) >= limit:
            break
    return out


def to_unit_tensor_layout(batch_u8: np.ndarray, mean: Sequence[float], std: Sequence[float]
                          ) -> np.ndarray:
    """(N, H, W[, C]) uint8 -> (N, C, H, W) float32 normalised as the manifest says."""
    x = batch_u8.astype(np.float32) / 255.0
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray((x - m) / s)


def from_unit_tensor_layout(x: np.ndarray, mean: Sequence[float], std: Sequence[float]
                            ) -> np.ndarray:
    """Inverse of :func:`to_unit_tensor_layout`: (N, C, H, W) -> (N, H, W[, C]) uint8."""
    m = np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    s = np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    u8 = np.rint(np.clip(x * s + m, 0, 1) * 255.0).astype(np.uint8)
    return u8[:, 0] if u8.shape[1] == 1 else u8.transpose(0, 2, 3, 1)
