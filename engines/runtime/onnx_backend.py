"""ONNX Runtime backend (the default; CPU everywhere, CUDA where onnxruntime-gpu is present)."""

from __future__ import annotations

import numpy as np

from engines.manifest import ModelManifest
from engines.runtime.base import Engine
from pipeline.errors import ModelError


class OnnxRuntimeEngine(Engine):
    def __init__(self, manifest: ModelManifest, device: str = "cpu", threads: int = 1) -> None:
        import onnxruntime as ort

        self.manifest = manifest
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if device.startswith("cuda"):
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise ModelError(f"onnxruntime: expected CUDAExecutionProvider for device "
                                 f"{device!r}, got only {ort.get_available_providers()}")
            dev_id = int(device.split(":")[1]) if ":" in device else 0
            providers: list = [("CUDAExecutionProvider", {"device_id": dev_id}),
                               "CPUExecutionProvider"]
        elif device == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise ModelError(f"onnxruntime: expected device 'cpu' or 'cuda[:N]', got {device!r}")
        try:
            self._session = ort.InferenceSession(str(manifest.onnx_path), sess_options=opts,
                                                 providers=providers)
        except Exception as err:  # onnxruntime raises several unrelated types
            raise ModelError(f"{manifest.onnx_path}: onnxruntime cannot load it: {err}") from err
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
