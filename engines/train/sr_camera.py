"""Camera-domain SR pairs: faces as a camera delivers them are the ground truth (Jo & Park).

The self-supervised method of the first paper, in the camera's domain rather than on clean
faces. Every source face goes through the camera simulator (:mod:`engines.cctv_sim`) at a
ground-truth size of 32-48 px, as a camera would deliver a near face: that camera-degraded crop
is the ground truth. The training input is the ground truth degraded *further* by a camera:
x4 area downscale with the simulator's optical blur, real street background, sensor noise and
H.264 / HEVC / JPEG at a random bitrate (a second pass through the simulator at 8-12 px). The
generator so learns to undo one more step of exactly what cameras do, and is applied at test
time to the camera's small faces (16-24 px -> 64-96 px), the scale-invariance assumption of
self-supervised SR.

Pairs are made once per data set and cached by the simulator. Each training sample gets one
augmentation applied to both images (a 90/180/270 degree rotation, a horizontal flip, or
none): degradations are not added on top, the camera already made them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from engines.cctv_sim import SimRanges, simulate_dataset
from engines.train.sr_data import to_hr

log = logging.getLogger("engines.train.sr")
CAMERA_AUGMENTATIONS = ("none", "hflip", "rot90", "rot180", "rot270")


@dataclass(frozen=True)
class CameraPairs:
    """Fixed (lr, hr) pairs grouped by ground-truth size: ``lr[s]`` is ``(N, s/scale, s/scale)``,
    ``hr[s]`` is ``(N, s, s)``, gray uint8."""

    lr: dict[int, np.ndarray]
    hr: dict[int, np.ndarray]

    def __len__(self) -> int:
        return sum(len(v) for v in self.hr.values())

    def summary(self) -> dict[str, int]:
        return {f"hr_{s}px": len(v) for s, v in sorted(self.hr.items())}


def _augment_pair(lr: np.ndarray, hr: np.ndarray, aug: str) -> tuple[np.ndarray, np.ndarray]:
    if aug == "hflip":
        return np.ascontiguousarray(lr[:, ::-1]), np.ascontiguousarray(hr[:, ::-1])
    if aug.startswith("rot"):
        k = int(aug[3:]) // 90
        return np.ascontiguousarray(np.rot90(lr, k)), np.ascontiguousarray(np.rot90(hr, k))
    return lr, hr


class CameraPairBank:
    """Samples batches of one ground-truth size from :class:`CameraPairs` (same API as
    :class:`engines.train.sr_data.FaceBank`; ``params`` is accepted and unused)."""

    def __init__(self, pairs: CameraPairs) -> None:
        if len(pairs) == 0:
            raise ValueError("CameraPairBank: expected at least one pair, got none")
        self.pairs = pairs
        self.by_size = {s: np.arange(len(v)) for s, v in pairs.hr.items() if len(v)}

    def __len__(self) -> int:
        return len(self.pairs)

    def sample_batch(self, batch_size: int, params: object, rng: np.random.Generator
                     ) -> tuple[np.ndarray, np.ndarray, int, list[str]]:
        sizes = sorted(self.by_size)
        counts = np.asarray([len(self.by_size[s]) for s in sizes], dtype=np.float64)
        hr_size = sizes[int(rng.choice(len(sizes), p=counts / counts.sum()))]
        n = len(self.by_size[hr_size])
        idx = rng.choice(n, size=batch_size, replace=n < batch_size)
        augs = [CAMERA_AUGMENTATIONS[int(a)]
                for a in rng.integers(len(CAMERA_AUGMENTATIONS), size=batch_size)]
        lrs, hrs = [], []
        for i, aug in zip(idx, augs, strict=True):
            lr, hr = _augment_pair(self.pairs.lr[hr_size][i], self.pairs.hr[hr_size][i], aug)
            lrs.append(lr)
            hrs.append(hr)
        return np.stack(lrs), np.stack(hrs), hr_size, augs


def build_camera_pairs(images: np.ndarray, ranges: SimRanges, hr_sizes: Sequence[int],
                       scale: int, clip: Path, seed: int, workers: int = 2,
                       cache_dir: Path | None = None) -> CameraPairs:
    """Camera-degraded ground truth and its further camera-degraded x``scale`` input.

    Args:
        images: ``(N, H, W)`` gray uint8 source faces (FER+ 48 px).
        ranges: camera distribution; ``min_size_px``/``max_size_px`` are the ground-truth
            face sizes in the camera frame (e.g. 32-48).
        hr_sizes: ground-truth sizes in px, each a multiple of ``scale``; each simulated face
            is cut to the largest one it can give without upsampling.
        scale: SR factor (4): the input is ``hr_size / scale`` px.
        clip: background clip for the simulator.
        seed: pairs are identical for the same inputs and seed (and cached by the simulator).

    Raises:
        ValueError: an ``hr_size`` not divisible by ``scale`` or larger than any simulated face.
    """
    bad = [s for s in hr_sizes if s % scale]
    if bad:
        raise ValueError(f"hr_sizes: expected multiples of scale {scale}, got {bad}")
    gt = simulate_dataset(images, ranges, clip, seed, workers=workers, cache_dir=cache_dir)
    sizes = sorted(hr_sizes, reverse=True)
    groups: dict[int, list[np.ndarray]] = {s: [] for s in sizes}
    for i in range(len(gt)):
        side = int(gt.sizes_px[i])
        target = next((s for s in sizes if s <= side), None)
        if target is not None:
            groups[target].append(to_hr(gt.crop(i), target))
    lr: dict[int, np.ndarray] = {}
    hr: dict[int, np.ndarray] = {}
    for k, (size, faces) in enumerate(sorted(groups.items())):
        if not faces:
            continue
        stack = np.stack(faces)
        lr_size = size // scale
        lr_ranges = replace(ranges, min_size_px=lr_size, max_size_px=lr_size)
        degraded = simulate_dataset(stack, lr_ranges, clip, seed + 1 + k, workers=workers,
                                    cache_dir=cache_dir)
        lr[size] = np.stack([degraded.crop(i) for i in range(len(degraded))])
        hr[size] = stack
    if not hr:
        raise ValueError(f"hr_sizes {list(hr_sizes)}: no simulated face is that large "
                         f"(largest {int(gt.sizes_px.max())} px)")
    pairs = CameraPairs(lr, hr)
    log.info("camera pairs: %s", pairs.summary())
    return pairs
