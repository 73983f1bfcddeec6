"""Emotion classifier as the pipeline uses it: BGR face crops in, calibrated probabilities out.

Preprocessing is :func:`engines.preprocess.faces_to_input` (the same function training and
evaluation use); probabilities are ``softmax(logits / temperature)`` with the temperature
fitted on FER2013Valid and stored in the manifest. Does not import torch.
"""

from __future__ import annotations

from collections.abc import Sequence
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
        return self.manifest.class_names

    @property
    def input_size_hw(self) -> tuple[int, int]:
        return self.manifest.input_size_hw

    @property
    def temperature(self) -> float:
        return self.manifest.temperature

    def logits(self, faces_bgr: Sequence[np.ndarray]) -> np.ndarray:
        if len(faces_bgr) == 0:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        x = faces_to_input(faces_bgr, self.manifest)
        outs = [self.engine.infer(x[i:i + self.max_batch_size])
                for i in range(0, len(x), self.max_batch_size)]
        return np.concatenate(outs)

    def predict_proba(self, faces_bgr: Sequence[np.ndarray]) -> np.ndarray:
        """(N, C) float32 temperature-calibrated class probabilities, rows sum to 1."""
        return calibrated_softmax(self.logits(faces_bgr), self.manifest.temperature)

    def warmup(self, batch_size: int = 1) -> None:
        self.engine.warmup(batch_size)

    def close(self) -> None:
        self.engine.close()
