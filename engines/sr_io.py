"""Face super-resolution as the pipeline uses it: low-res BGR crops in, upscaled BGR crops out.

The generator runs through an :class:`engines.runtime.Engine` whose manifest has task
``"sr"``. Input preprocessing is :func:`engines.preprocess.faces_to_input` (the one shared
function); this module only fits each crop to the manifest input size first and undoes the
normalisation on the way out.

Colour follows the manifest: ``rgb`` / ``bgr`` models restore all three channels;
``gray`` models restore luminance only, the usual choice for CCTV faces, where detail lives
in Y and chroma is noisy and subsampled anyway: the Y channel of YCrCb goes through the
model and Cr/Cb are upscaled bicubically, then the two are merged back to BGR.

Does not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from engines.manifest import ModelManifest
from engines.preprocess import faces_to_input, resize_face
from engines.runtime.base import Engine
from pipeline.errors import ModelError


def fit_to_size(image: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize to ``size_hw``: INTER_AREA when shrinking, bicubic when enlarging."""
    return resize_face(image, size_hw, enlarge=cv2.INTER_CUBIC)


def output_size_hw(manifest: ModelManifest) -> tuple[int, int]:
    """Spatial size the generator must produce: manifest input size × scale factor."""
    h, w = manifest.input_size_hw
    scale = int(manifest.scale_factor or 0)
    return h * scale, w * scale


def _check_manifest(manifest: ModelManifest) -> None:
    if manifest.task != "sr":
        raise ModelError(f"{manifest.manifest_path or manifest.name}: task: expected 'sr', "
                         f"got {manifest.task!r}")
    if not (isinstance(manifest.scale_factor, int) and manifest.scale_factor >= 1):
        raise ModelError(f"{manifest.manifest_path or manifest.name}: scale_factor: expected a "
                         f"positive int for task 'sr', got {manifest.scale_factor!r}")


def _check_crop(i: int, crop: np.ndarray) -> None:
    if not isinstance(crop, np.ndarray) or crop.dtype != np.uint8:
        raise ValueError(f"super_resolve: crop {i}: expected a uint8 numpy array, got "
                         f"{type(crop).__name__} {getattr(crop, 'dtype', '')}")
    if crop.ndim != 3 or crop.shape[2] != 3 or 0 in crop.shape:
        raise ValueError(f"super_resolve: crop {i}: expected shape (H, W, 3) BGR, "
                         f"got {crop.shape}")


def _denormalise(batch: np.ndarray, manifest: ModelManifest) -> np.ndarray:
    """(N, C, H, W) model output -> (N, H, W, C) uint8, inverting faces_to_input's scaling."""
    mean = np.asarray(manifest.mean, dtype=np.float32).reshape(1, -1, 1, 1)
    std = np.asarray(manifest.std, dtype=np.float32).reshape(1, -1, 1, 1)
    unit = np.clip(batch * std + mean, 0.0, 1.0)
    # rint, not truncation: x/255*255 comes back as v - 1e-6 and must stay v
    return np.rint(unit * 255.0).astype(np.uint8).transpose(0, 2, 3, 1)


def _run(engine: Engine, batch: np.ndarray, max_batch_size: int) -> np.ndarray:
    m = engine.manifest
    out_h, out_w = output_size_hw(m)
    outs = []
    for start in range(0, len(batch), max_batch_size):
        chunk = batch[start:start + max_batch_size]
        out = engine.infer(chunk)
        expected = (len(chunk), m.channels, out_h, out_w)
        if out.shape != expected:
            raise ModelError(f"{m.onnx_path}: SR output: expected shape {expected} (input "
                             f"{list(m.input_size_hw)} x scale_factor {m.scale_factor}), "
                             f"got {tuple(out.shape)}")
        if not np.isfinite(out).all():
            raise ModelError(f"{m.onnx_path}: SR output: expected finite values, got NaN/inf")
        outs.append(out)
    return np.concatenate(outs)


def super_resolve(engine: Engine, crops_bgr: Sequence[np.ndarray],
                  max_batch_size: int = 32) -> list[np.ndarray]:
    """Upscale BGR uint8 crops with an SR engine.

    Each crop (any size) is fitted to the manifest input size, run in batches of at most
    ``max_batch_size``, and returned as a BGR uint8 image of the manifest input size ×
    ``scale_factor`` (callers resize to their own target). Raises :class:`ModelError` when the
    manifest is not an SR model or the generator's output has the wrong shape.
    """
    m = engine.manifest
    _check_manifest(m)
    if max_batch_size < 1:
        raise ValueError(f"super_resolve: expected max_batch_size >= 1, got {max_batch_size}")
    if len(crops_bgr) == 0:
        return []
    for i, crop in enumerate(crops_bgr):
        _check_crop(i, crop)
    out_hw = output_size_hw(m)

    if m.channels == 1:
        ycrcb = [cv2.cvtColor(crop, cv2.COLOR_BGR2YCrCb) for crop in crops_bgr]
        batch = faces_to_input([fit_to_size(img[:, :, 0], m.input_size_hw) for img in ycrcb], m)
        luma = _denormalise(_run(engine, batch, max_batch_size), m)
        restored = []
        for y_hr, img in zip(luma, ycrcb, strict=True):
            chroma = fit_to_size(np.ascontiguousarray(img[:, :, 1:]), out_hw)
            merged = np.dstack([y_hr[:, :, 0], chroma])
            restored.append(cv2.cvtColor(merged, cv2.COLOR_YCrCb2BGR))
        return restored

    batch = faces_to_input([fit_to_size(crop, m.input_size_hw) for crop in crops_bgr], m)
    images = _denormalise(_run(engine, batch, max_batch_size), m)
    if m.color == "rgb":
        return [cv2.cvtColor(img, cv2.COLOR_RGB2BGR) for img in images]
    return [np.ascontiguousarray(img) for img in images]


__all__ = ["fit_to_size", "output_size_hw", "super_resolve"]
