"""ONNX Runtime backend (the default; CPU everywhere, CUDA where onnxruntime-gpu is present)."""

from __future__ import annotations

import numpy as np

from engines.manifest import ModelManifest
from engines.runtime.base import Engine
from engines.runtime.graph import open_ort_session
from pipeline.errors import ModelError


class OnnxRuntimeEngine(Engine):
    def __init__(self, manifest: ModelManifest, device: str = "cpu", threads: int = 1) -> None:
        self.manifest = manifest
        self._session = open_ort_session(manifest.onnx_path, device, threads)
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        if inputs != [manifest.input_name]:
            raise ModelError(f"{manifest.onnx_path}: expected inputs [{manifest.input_name!r}], "
                             f"got {inputs}")
        if manifest.output_name not in outputs:
            raise ModelError(f"{manifest.onnx_path}: expected output {manifest.output_name!r}, "
                             f"got {outputs}")

    def infer(self, batch_nchw: np.ndarray) -> np.ndarray:
        x = self.check_input(batch_nchw)
        (out,) = self._session.run([self.manifest.output_name], {self.manifest.input_name: x})
        return np.asarray(out, dtype=np.float32)

    def close(self) -> None:
        self._session = None
