"""Graph sessions: ONNX graphs with named inputs and outputs of any shape (the detectors).

The :class:`~engines.runtime.base.Engine` interface serves models with a manifest (one
fixed-size NCHW input, one output: SR and emotion). Detector graphs take inputs whose size
follows the image and return several outputs, so they run through a *graph session* with
ONNX Runtime's calling convention, ``run(output_names, feeds) -> list[np.ndarray]``, opened
here and only here, whatever the backend:

- ``onnxruntime`` on ``cpu`` (the default), or on ``cuda[:N]`` through the CUDA execution
  provider where the installed onnxruntime has it;
- ``torch`` on ``cpu`` or ``cuda[:N]`` (:class:`engines.runtime.onnx_torch.TorchOnnxGraph`).

A CUDA device that this machine cannot give (no CUDA provider, torch without CUDA, torch not
installed) falls back to ONNX Runtime on the CPU with one warning naming the reason, so a
config written for a GPU host still starts on a CPU one; :attr:`GraphSession.description`
says what actually runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ModelError

log = logging.getLogger(__name__)

GRAPH_BACKENDS = ("onnxruntime", "torch")


def cuda_index(device: str) -> int | None:
    """``None`` for ``"cpu"``, the device index for ``"cuda"`` / ``"cuda:N"``; ModelError else."""
    if device == "cpu":
        return None
    if device == "cuda":
        return 0
    head, _, index = device.partition(":")
    if head == "cuda" and index.isdigit():
        return int(index)
    raise ModelError(f"device: expected 'cpu' or 'cuda[:N]', got {device!r}")


def open_ort_session(model_path: Path, device: str = "cpu", threads: int = 1,
                     varying_input_shape: bool = False) -> Any:
    """An ``onnxruntime.InferenceSession`` on ``device`` with ``threads`` intra-op threads.

    ``varying_input_shape`` turns off memory-pattern planning, which only pays off when every
    call has the same shape (measured: P-Net over a 1080p pyramid 0.42 s without it against
    0.6 s with it, 1 thread). Raises ModelError for a missing or unloadable file, or a CUDA
    device without the CUDA execution provider.
    """
    import onnxruntime as ort

    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"model not found: {model_path}")
    index = cuda_index(device)
    if index is None:
        providers: list = ["CPUExecutionProvider"]
    elif "CUDAExecutionProvider" in ort.get_available_providers():
        providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    else:
        raise ModelError(f"onnxruntime: expected CUDAExecutionProvider for device {device!r}, "
                         f"got only {ort.get_available_providers()}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.enable_mem_pattern = not varying_input_shape
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(model_path), sess_options=options, providers=providers)
    except Exception as err:  # onnxruntime raises its own untyped errors
        raise ModelError(f"{model_path}: onnxruntime cannot load it: {err}") from err


def cuda_unavailable_reason(backend: str, device: str) -> str | None:
    """Why ``backend`` cannot run on CUDA ``device`` here, or None when it can (or ``device``
    is the CPU)."""
    index = cuda_index(device)
    if index is None:
        return None
    if backend == "onnxruntime":
        import onnxruntime as ort

        if "CUDAExecutionProvider" not in ort.get_available_providers():
            return (f"onnxruntime {ort.__version__} has no CUDAExecutionProvider "
                    f"(providers {ort.get_available_providers()})")
        return None
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    if index >= torch.cuda.device_count():
        return f"torch sees {torch.cuda.device_count()} CUDA device(s), not {device!r}"
    return None


@dataclass(frozen=True)
class GraphSession:
    """An opened graph: ``session`` has ``run``, ``get_inputs`` and ``get_outputs`` like an
    ONNX Runtime session. ``backend`` / ``device`` are what runs (after any fallback);
    ``fallback_reason`` is why it is not what was asked, or None."""

    session: Any
    backend: str
    device: str
    precision: str
    fallback_reason: str | None = None

    @property
    def description(self) -> str:
        text = f"{self.backend}:{self.device}:{self.precision}"
        if self.fallback_reason is None:
            return text
        return f"{text} (fallback: {self.fallback_reason})"

    def run(self, output_names: list[str] | None, feeds: dict) -> list:
        return self.session.run(output_names, feeds)

    def get_inputs(self) -> list:
        return self.session.get_inputs()

    def get_outputs(self) -> list:
        return self.session.get_outputs()


def open_graph(model_path: Path, backend: str = "onnxruntime", device: str = "cpu",
               precision: str = "fp32", threads: int = 1,
               varying_input_shape: bool = False) -> GraphSession:
    """Open ``model_path`` with ``backend`` on ``device``, falling back to ONNX Runtime on the
    CPU (fp32) with a warning when this machine cannot give that CUDA device.

    ``precision`` "fp16" applies to the torch backend on CUDA only (ONNX Runtime runs the
    graph's own fp32). Raises ModelError for an unknown backend or precision, a missing or
    unreadable file, or a graph the backend cannot run.
    """
    if backend not in GRAPH_BACKENDS:
        raise ModelError(f"backend: expected one of {GRAPH_BACKENDS}, got {backend!r}")
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"model not found: {model_path}")
    reason = cuda_unavailable_reason(backend, device)
    if reason is not None:
        log.warning("%s: %s on %s is not available here (%s); running onnxruntime on the CPU",
                    model_path.name, backend, device, reason)
        return GraphSession(open_ort_session(model_path, "cpu", threads, varying_input_shape),
                            "onnxruntime", "cpu", "fp32", reason)
    if backend == "onnxruntime":
        session = open_ort_session(model_path, device, threads, varying_input_shape)
        return GraphSession(session, backend, device, "fp32")
    from engines.runtime.onnx_torch import TorchOnnxGraph

    if device == "cpu":
        import torch

        torch.set_num_threads(int(threads))
        precision = "fp32"  # half precision is for the GPU; on the CPU it is slower, not faster
    return GraphSession(TorchOnnxGraph(model_path, device, precision), backend, device, precision)
