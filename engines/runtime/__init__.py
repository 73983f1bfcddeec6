"""Inference engines behind one interface; backends are chosen by a ``backend`` string.

Only numpy and the manifest are imported here; onnxruntime, torch and tensorrt are imported
inside the backend that needs them.
"""

from __future__ import annotations

from pathlib import Path

from engines.manifest import ModelManifest, load_manifest
from engines.runtime.base import Engine
from pipeline.errors import ModelError

BACKENDS = ("onnxruntime", "torch", "tensorrt")


def create_engine_from_manifest(manifest: ModelManifest, backend: str = "onnxruntime",
                                device: str = "cpu", threads: int = 1,
                                plan_cache_dir: Path | None = None,
                                precision: str | None = None) -> Engine:
    """``manifest`` opened with ``backend`` on ``device``. ``precision`` ("fp32" / "fp16",
    None for the backend's default: fp32, fp16 for TensorRT) applies to torch and TensorRT;
    ONNX Runtime runs the graph as exported. Raises ModelError for an unknown backend."""
    if backend == "onnxruntime":
        from engines.runtime.onnx_backend import OnnxRuntimeEngine

        return OnnxRuntimeEngine(manifest, device=device, threads=threads)
    if backend == "torch":
        from engines.runtime.torch_backend import TorchEngine

        return TorchEngine(manifest, device=device, threads=threads,
                           precision=precision or "fp32")
    if backend == "tensorrt":
        from engines.runtime.tensorrt_backend import DEFAULT_PLAN_CACHE, TensorRTEngine

        dev = device if device.startswith("cuda") else "cuda:0"
        return TensorRTEngine(manifest, device=dev,
                              plan_cache_dir=plan_cache_dir or DEFAULT_PLAN_CACHE,
                              fp16=precision != "fp32")
    raise ModelError(f"backend: expected one of {BACKENDS}, got {backend!r}")


def create_engine(manifest_path: str | Path, backend: str = "onnxruntime", device: str = "cpu",
                  threads: int = 1, plan_cache_dir: Path | None = None) -> Engine:
    """Load and validate the manifest, then open it with the chosen backend."""
    manifest = load_manifest(manifest_path)
    return create_engine_from_manifest(manifest, backend, device, threads, plan_cache_dir)


__all__ = ["BACKENDS", "Engine", "create_engine", "create_engine_from_manifest"]
