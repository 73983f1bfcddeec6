"""Evaluation conditions: how a face reaches the classifier (size, camera, codec).

``clean``: antialiased downscale (``cv2.INTER_AREA``) to the face size; ``cctv``: the camera
simulator (:mod:`engines.cctv_sim`: blur, downscale, real street frames, sensor noise, H.264 or
HEVC at a bitrate, face cut from the decoded frame); ``jpeg``: the simulator's cheap path.
Every condition then restores the crop to the model input with the same method.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from engines.cctv_sim import CameraSettings, simulate_fixed
from engines.train.degradations import downscale, restore

Kind = Literal["clean", "cctv", "jpeg"]


@dataclass(frozen=True)
class Condition:
    kind: Kind
    size_px: int
    bitrate_kbps: float = 0.0
    codec: Literal["h264", "hevc"] = "h264"
    blur_sigma: float = 0.5
    noise_sigma: float = 2.0
    jpeg_quality: int = 30

    @property
    def name(self) -> str:
        if self.kind == "clean":
            return f"clean_{self.size_px}px"
        if self.kind == "jpeg":
            return f"jpeg_q{self.jpeg_quality}_{self.size_px}px"
        return f"{self.codec}_{int(self.bitrate_kbps)}kbps_{self.size_px}px"

    def describe(self) -> dict:
        out = {"condition": self.kind, "size_px": self.size_px}
        if self.kind != "clean":
            out.update(blur_sigma_lr_px=self.blur_sigma, noise_sigma=self.noise_sigma)
        if self.kind == "cctv":
            out.update(codec=self.codec, bitrate_kbps=self.bitrate_kbps)
        if self.kind == "jpeg":
            out.update(jpeg_quality=self.jpeg_quality)
        return out

    def degrade(self, images: np.ndarray, clip: Path | None, seed: int) -> list[np.ndarray]:
        """Low-resolution gray crops ``(size, size)`` of each ``(H, W)`` gray face."""
        if self.kind == "clean":
            return [downscale(img, self.size_px) for img in images]
        settings = CameraSettings(
            codec="jpeg" if self.kind == "jpeg" else self.codec,
            bitrate_kbps=self.bitrate_kbps or 1000.0, noise_sigma=self.noise_sigma,
            jpeg_quality=self.jpeg_quality)
        return simulate_fixed(images, self.size_px, settings, clip, seed, self.blur_sigma)


def restored_faces(condition: Condition, images: np.ndarray, out_hw: tuple[int, int],
                   method: str, clip: Path | None, seed: int) -> list[np.ndarray]:
    return [restore(c, out_hw, method) for c in condition.degrade(images, clip, seed)]


def conditions_from_args(sizes: Sequence[int], degrade: str, bitrates: Sequence[float],
                         codec: str, blur_sigma: float, noise_sigma: float,
                         jpeg_quality: int) -> list[Condition]:
    """Clean rows for every size, plus one row per size and bitrate (cctv) or quality (jpeg)."""
    out = [Condition("clean", s) for s in sizes]
    if degrade == "cctv":
        out += [Condition("cctv", s, float(b), codec, blur_sigma, noise_sigma)
                for s in sizes for b in bitrates]
    elif degrade == "jpeg":
        out += [Condition("jpeg", s, 0.0, "h264", blur_sigma, noise_sigma, jpeg_quality)
                for s in sizes]
    return out
