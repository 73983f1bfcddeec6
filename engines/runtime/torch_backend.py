"""torch backend: rebuilds the network from the manifest's ``architecture`` and loads the
state-dict named by ``weights_file`` with ``torch.load(weights_only=True)`` (no code runs).
torch is imported here only, so CPU deployments never need it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from engines.manifest import ModelManifest, verify_weights_file
from engines.runtime.base import Engine
from engines.runtime.onnx_torch import disable_tf32
from pipeline.errors import ModelError

if TYPE_CHECKING:
    import torch


def _build_network(manifest: ModelManifest) -> torch.nn.Module:
    """The network named by the manifest: the SR generator for task "sr", else the ResNet."""
    if manifest.task == "sr":
        from engines.models.generator import build_generator

        return build_generator(manifest.architecture)
    from engines.models.resnet import build_resnet

    return build_resnet(manifest.architecture)


class TorchEngine(Engine):
    """The manifest's network in torch on ``device``. ``precision`` "fp32" is IEEE fp32 (no
    TF32 convolutions on CUDA, so results match the CPU); "fp16" runs weights and inputs in
    half precision (CUDA only; outputs are float32)."""

    def __init__(self, manifest: ModelManifest, device: str = "cpu", threads: int = 1,
                 precision: str = "fp32") -> None:
        import torch

        if precision not in ("fp32", "fp16"):
            raise ModelError(f"torch: precision expected 'fp32' or 'fp16', got {precision!r}")
        if precision == "fp16" and not device.startswith("cuda"):
            raise ModelError(f"torch: precision 'fp16' needs a CUDA device, got {device!r}")
        self.manifest = manifest
        self.precision = precision
        wp = verify_weights_file(manifest)
        if device == "cpu":
            torch.set_num_threads(int(threads))
        elif device.startswith("cuda") and not torch.cuda.is_available():
            raise ModelError(f"torch: expected a CUDA device for {device!r}, got none")
        elif device.startswith("cuda"):
            disable_tf32(torch)
        self._torch = torch
        self._device = torch.device(device)
        try:
            model = _build_network(manifest)
            state = torch.load(wp, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (ValueError, RuntimeError, KeyError) as err:
            raise ModelError(f"{wp}: cannot load weights into architecture "
                             f"{manifest.architecture}: {err}") from err
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        self._model = model.to(self._device, self._dtype).eval()

    def infer(self, batch_nchw: np.ndarray) -> np.ndarray:
        x = self.check_input(batch_nchw)
        with self._torch.inference_mode():
            out = self._model(self._torch.from_numpy(x).to(self._device, self._dtype))
        return out.float().cpu().numpy()

    def close(self) -> None:
        self._model = None
