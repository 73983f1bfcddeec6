"""The one face preprocessing function, shared by training, evaluation and runtime.

``faces_to_input`` turns face crops into the model's NCHW float32 input:

1. resize to the model input size: ``cv2.INTER_AREA`` when shrinking (antialiased, the same
   as the evaluation downscale), ``cv2.INTER_LINEAR`` (bilinear) when enlarging, which is the
   restore method the emotion model was trained and evaluated with;
2. colour convert from BGR (or single-channel gray) to the model colour (``gray``, ``rgb``
   or ``bgr``);
3. scale to [0, 1] and normalise with the per-channel ``mean`` / ``std``.

It needs only the input spec (anything with ``input_size_hw``, ``color``, ``mean``, ``std``,
e.g. :class:`engines.manifest.ModelManifest` or :class:`InputSpec`) and never imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np


class InputSpecLike(Protocol):
    input_size_hw: tuple[int, int]
    color: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class InputSpec:
    input_size_hw: tuple[int, int] = (48, 48)
    color: str = "gray"
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)

    @property
    def channels(self) -> int:
        return 1 if self.color == "gray" else 3


def _to_color(face: np.ndarray, color: str) -> np.ndarray:
    if face.ndim == 2:
        if color == "gray":
            return face
        return cv2.cvtColor(face, cv2.COLOR_GRAY2RGB if color == "rgb" else cv2.COLOR_GRAY2BGR)
    if color == "gray":
        return cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    if color == "rgb":
        return cv2.cvtColor(face, cv2.COLOR_BGR2RGB)
    return face


def resize_face(face: np.ndarray, size_hw: tuple[int, int],
                enlarge: int = cv2.INTER_LINEAR) -> np.ndarray:
    """Resize one crop to ``size_hw``: INTER_AREA to shrink, ``enlarge`` (bilinear by
    default) to enlarge."""
    h, w = face.shape[:2]
    th, tw = size_hw
    if (h, w) == (th, tw):
        return face
    interp = cv2.INTER_AREA if h * w > th * tw else enlarge
    return cv2.resize(face, (tw, th), interpolation=interp)


def faces_to_input(faces_bgr: Sequence[np.ndarray], spec: InputSpecLike) -> np.ndarray:
    """Stack BGR uint8 crops (any size; ``(H, W)`` gray also accepted) into (N, C, H, W) float32."""
    if spec.color not in ("gray", "rgb", "bgr"):
        raise ValueError(f"faces_to_input: expected color gray|rgb|bgr, got {spec.color!r}")
    h, w = (int(v) for v in spec.input_size_hw)
    channels = 1 if spec.color == "gray" else 3
    out = np.empty((len(faces_bgr), channels, h, w), dtype=np.float32)
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1, 1, 1)
    for i, face in enumerate(faces_bgr):
        if not isinstance(face, np.ndarray) or face.dtype != np.uint8:
            raise ValueError(f"faces_to_input: face {i}: expected a uint8 numpy array, got "
                             f"{type(face).__name__} {getattr(face, 'dtype', '')}")
        if face.ndim not in (2, 3) or (face.ndim == 3 and face.shape[2] != 3) or 0 in face.shape:
            raise ValueError(f"faces_to_input: face {i}: expected shape (H, W, 3) BGR or (H, W) "
                             f"gray, got {face.shape}")
        img = _to_color(resize_face(face, (h, w)), spec.color)
        if img.ndim == 2:
            out[i, 0] = img
        else:
            out[i] = img.transpose(2, 0, 1)
    out *= 1.0 / 255.0
    out -= mean
    out /= std
    return out
