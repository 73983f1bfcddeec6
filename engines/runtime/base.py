"""The one inference interface every backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from engines.manifest import ModelManifest


class Engine(ABC):
    """Runs one exported model on NCHW float32 batches (already preprocessed).

    ``infer`` returns the model's raw output as float32 numpy (logits for the emotion model).
    Engines are not thread-safe: one owner per model and device calls them.
    """

    manifest: ModelManifest

    def check_input(self, batch_nchw: np.ndarray) -> np.ndarray:
        """Validate the batch once, at the boundary; return it as contiguous float32."""
        c, (h, w) = self.manifest.channels, self.manifest.input_size_hw
        if not isinstance(batch_nchw, np.ndarray):
            raise ValueError(f"{type(self).__name__}.infer: expected a numpy array, got "
                             f"{type(batch_nchw).__name__}")
        if batch_nchw.ndim != 4 or batch_nchw.shape[1:] != (c, h, w) or batch_nchw.shape[0] < 1:
            raise ValueError(f"{type(self).__name__}.infer: expected shape (N>=1, {c}, {h}, {w}), "
                             f"got {batch_nchw.shape}")
        return np.ascontiguousarray(batch_nchw, dtype=np.float32)

    @abstractmethod
    def infer(self, batch_nchw: np.ndarray) -> np.ndarray: ...

    def warmup(self, batch_size: int = 1) -> None:
        """Run a zero batch so lazy allocations and kernel selection happen before serving."""
        c, (h, w) = self.manifest.channels, self.manifest.input_size_hw
        self.infer(np.zeros((batch_size, c, h, w), dtype=np.float32))

    def close(self) -> None:  # noqa: B027 - optional hook, default no-op
        """Release sessions / device memory. Safe to call twice."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
