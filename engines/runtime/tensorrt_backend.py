"""TensorRT 10 backend: deserialises a prebuilt plan, device buffers and stream from torch.

No pycuda: buffers are torch CUDA tensors, the stream is a ``torch.cuda.Stream``. Plans are
built explicitly (``python -m engines.build tensorrt``), never on first use, and cached in a
directory keyed by GPU name and TensorRT version because a plan only runs on the GPU model
and TensorRT version that built it. tensorrt and torch are imported lazily.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from engines.manifest import ModelManifest
from engines.runtime.base import Engine
from pipeline.errors import ModelError

DEFAULT_PLAN_CACHE = Path("runs/trt_cache")


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as err:
        raise ModelError("tensorrt backend: expected the TensorRT 10 Python package "
                         "('import tensorrt'), got ImportError; use backend 'onnxruntime' "
                         "or 'torch' on this machine") from err
    if int(trt.__version__.split(".")[0]) < 10:
        raise ModelError(f"tensorrt backend: expected TensorRT >= 10, got {trt.__version__}")
    return trt


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")


def plan_path(manifest: ModelManifest, cache_dir: Path, gpu_name: str, trt_version: str,
              max_batch: int, fp16: bool) -> Path:
    """``cache_dir/<gpu>_trt<version>/<name>_<onnx sha[:16]>_b<max>_<fp16|fp32>.plan``."""
    key = f"{_slug(gpu_name)}_trt{_slug(trt_version)}"
    sha = (manifest.onnx_sha256 or "nosha")[:16]
    prec = "fp16" if fp16 else "fp32"
    return Path(cache_dir) / key / f"{_slug(manifest.name)}_{sha}_b{max_batch}_{prec}.plan"


def _cuda_device(device: str) -> int:
    if not device.startswith("cuda"):
        raise ModelError(f"tensorrt backend: expected device 'cuda[:N]', got {device!r}")
    return int(device.split(":")[1]) if ":" in device else 0


def build_plan(manifest: ModelManifest, cache_dir: Path = DEFAULT_PLAN_CACHE,
               device: str = "cuda:0", max_batch: int = 64, opt_batch: int = 32,
               fp16: bool = True, workspace_mb: int = 1024) -> Path:
    """Parse the manifest's ONNX file and serialise a plan for this GPU into the cache."""
    trt = import_tensorrt()
    import torch

    dev = _cuda_device(device)
    out = plan_path(manifest, cache_dir, torch.cuda.get_device_name(dev), trt.__version__,
                    max_batch, fp16)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(manifest.onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"{manifest.onnx_path}: TensorRT cannot parse it: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    if fp16 and getattr(builder, "platform_has_fast_fp16", True):
        config.set_flag(trt.BuilderFlag.FP16)
    c, (h, w) = manifest.channels, manifest.input_size_hw
    profile = builder.create_optimization_profile()
    profile.set_shape(manifest.input_name, (1, c, h, w), (min(opt_batch, max_batch), c, h, w),
                      (max_batch, c, h, w))
    config.add_optimization_profile(profile)
    with torch.cuda.device(dev):
        serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelError(f"{manifest.onnx_path}: TensorRT build_serialized_network failed")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(out)
    return out


class TensorRTEngine(Engine):
    def __init__(self, manifest: ModelManifest, device: str = "cuda:0",
                 plan_cache_dir: Path = DEFAULT_PLAN_CACHE, max_batch: int = 64,
                 fp16: bool = True) -> None:
        trt = import_tensorrt()
        import torch

        self.manifest = manifest
        self._torch = torch
        dev = _cuda_device(device)
        if not torch.cuda.is_available():
            raise ModelError("tensorrt backend: expected a CUDA device, got none")
        self._device = torch.device("cuda", dev)
        path = plan_path(manifest, plan_cache_dir, torch.cuda.get_device_name(dev),
                         trt.__version__, max_batch, fp16)
        if not path.is_file():
            raise ModelError(f"tensorrt backend: expected a plan at {path}, got none; build it "
                             f"with: python -m engines.build tensorrt --manifest "
                             f"{manifest.manifest_path} --cache-dir {plan_cache_dir}")
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        with torch.cuda.device(dev):
            self._engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self._engine is None:
            raise ModelError(f"{path}: TensorRT cannot deserialise the plan (built for another "
                             f"GPU or TensorRT version?)")
        self._context = self._engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=self._device)
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names
                  if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if inputs != [manifest.input_name] or manifest.output_name not in names:
            raise ModelError(f"{path}: expected input {manifest.input_name!r} and output "
                             f"{manifest.output_name!r}, got tensors {names}")
        self._max_batch = max_batch

    def infer(self, batch_nchw: np.ndarray) -> np.ndarray:
        x = self.check_input(batch_nchw)
        torch = self._torch
        outs = []
        for start in range(0, x.shape[0], self._max_batch):
            chunk = x[start:start + self._max_batch]
            with torch.cuda.stream(self._stream):
                inp = torch.from_numpy(chunk).to(self._device, non_blocking=True)
                self._context.set_input_shape(self.manifest.input_name, tuple(inp.shape))
                out_shape = tuple(self._context.get_tensor_shape(self.manifest.output_name))
                out = torch.empty(out_shape, dtype=torch.float32, device=self._device)
                self._context.set_tensor_address(self.manifest.input_name, inp.data_ptr())
                self._context.set_tensor_address(self.manifest.output_name, out.data_ptr())
                if not self._context.execute_async_v3(self._stream.cuda_stream):
                    raise ModelError("tensorrt backend: execute_async_v3 failed")
                host = out.to("cpu", non_blocking=False)
            self._stream.synchronize()
            outs.append(host.numpy())
        return np.concatenate(outs).astype(np.float32, copy=False)

    def close(self) -> None:
        self._context = None
        self._engine = None
