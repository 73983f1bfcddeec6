"""Emotion classifier as the pipeline uses it: BGR face crops in, calibrated probabilities out.

Preprocessing is :func:`engines.preprocess.faces_to_input` (the same function training and
evaluation use). The network's outputs are the emotion classes and, optionally, a non-face
class (``manifest.non_face_class``). From the raw logits ``z`` (N, C):

- emotion probabilities ``softmax((z_e + b_e) / T)`` over the emotion outputs only, with the
  logit adjustment ``b`` and temperature ``T`` from the manifest (fitted on FER2013Valid);
- non-face probability ``softmax((z + b) / T)[non_face]`` over all outputs; a crop is
  rejected when it reaches ``manifest.non_face_threshold``.

Does not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from engines.manifest import ModelManifest, load_manifest
from engines.preprocess import faces_to_input
from engines.runtime import Engine, create_engine_from_manifest


def calibrated_softmax(logits: np.ndarray, temperature: float) -> np.ndarray:
    z = logits.astype(np.float32) / np.float32(temperature)
    z -= z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def emotion_indices(manifest: ModelManifest) -> list[int]:
    return [i for i, c in enumerate(manifest.class_names) if c != manifest.non_face_class]


def adjusted_logits(logits: np.ndarray, manifest: ModelManifest) -> np.ndarray:
    """(N, C) raw logits plus the manifest's logit adjustment (no temperature)."""
    if not manifest.logit_bias:
        return logits
    return logits + np.asarray(manifest.logit_bias, dtype=np.float32)


def emotion_logits(logits: np.ndarray, manifest: ModelManifest) -> np.ndarray:
    """(N, E) adjusted logits of the emotion outputs only (``softmax(. / T)`` gives probs)."""
    return adjusted_logits(logits, manifest)[:, emotion_indices(manifest)]


def non_face_probability(logits: np.ndarray, manifest: ModelManifest) -> np.ndarray:
    """(N,) probability that each crop is not a face; zeros for a model without that output."""
    if manifest.non_face_class is None:
        return np.zeros(len(logits), np.float32)
    probs = calibrated_softmax(adjusted_logits(logits, manifest), manifest.temperature)
    return probs[:, manifest.class_names.index(manifest.non_face_class)]


@dataclass(frozen=True)
class EmotionPrediction:
    """Per crop: emotion probabilities (N, E), rows sum to 1, and non-face probability (N,)."""

    probabilities: np.ndarray = field(repr=False)
    non_face_probability: np.ndarray = field(repr=False)
    non_face_threshold: float = 1.0

    @property
    def is_face(self) -> np.ndarray:
        """(N,) bool: False for crops rejected as not a face."""
        return self.non_face_probability < self.non_face_threshold


class EmotionModel:
    def __init__(self, engine: Engine, max_batch_size: int = 64) -> None:
        self.engine = engine
        self.manifest: ModelManifest = engine.manifest
        self.max_batch_size = max_batch_size

    @classmethod
    def load(cls, manifest_path: str | Path, backend: str = "onnxruntime", device: str = "cpu",
             threads: int = 1, expect_class_names: Sequence[str] | None = None) -> EmotionModel:
        manifest = load_manifest(manifest_path, expect_task="emotion",
                                 expect_class_names=expect_class_names)
        return cls(create_engine_from_manifest(manifest, backend, device, threads))

    @property
    def class_names(self) -> tuple[str, ...]:
        """The emotion classes (the non-face output, if any, excluded)."""
        return tuple(self.manifest.class_names[i] for i in emotion_indices(self.manifest))

    @property
    def input_size_hw(self) -> tuple[int, int]:
        return self.manifest.input_size_hw

    @property
    def temperature(self) -> float:
        return self.manifest.temperature

    def logits(self, faces_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """(N, C) raw network outputs, every class including a non-face output."""
        if len(faces_bgr) == 0:
            return np.zeros((0, len(self.manifest.class_names)), dtype=np.float32)
        x = faces_to_input(faces_bgr, self.manifest)
        outs = [self.engine.infer(x[i:i + self.max_batch_size])
                for i in range(0, len(x), self.max_batch_size)]
        return np.concatenate(outs)

    def predict(self, faces_bgr: Sequence[np.ndarray]) -> EmotionPrediction:
        logits = self.logits(faces_bgr)
        return EmotionPrediction(
            calibrated_softmax(emotion_logits(logits, self.manifest), self.temperature),
            non_face_probability(logits, self.manifest), self.manifest.non_face_threshold)

    def predict_proba(self, faces_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """(N, E) float32 calibrated emotion probabilities, rows sum to 1."""
        return self.predict(faces_bgr).probabilities

    def warmup(self, batch_size: int = 1) -> None:
        self.engine.warmup(batch_size)

    def close(self) -> None:
        self.engine.close()
