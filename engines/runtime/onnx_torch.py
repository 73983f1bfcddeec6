"""Runs an ONNX graph with torch ops, node by node: the detectors' graphs on a CUDA device.

The detector graphs (MTCNN's P/R/O-Nets, YuNet, SCRFD) are small convolutional nets made of
a few dozen standard operators. No converter ships on the GPU machines (no package registry
there), so this module reads the graph with ``onnx`` (pure protobuf) and maps each node to
the torch function with the same semantics. Only the operators in :data:`OPS` are
supported; a graph with any other fails at load time with the operator's name, never on the
first frame. Float weights become tensors on the device (float16 with ``precision="fp16"``);
integer tensors (shapes, axes, indices) stay on the CPU, where shape arithmetic is cheap.

Parity with ONNX Runtime on CPU is what tests/test_detect_runtime.py checks on every shipped
and test graph; ``precision="fp32"`` turns cuDNN's TF32 convolutions off so fp32 means IEEE
fp32 (max abs diff <= 1e-4 in probabilities, the target of issue 16).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ModelError

PRECISIONS = ("fp32", "fp16")
# the operators the runner maps to torch (Constant nodes are folded at load time)
OPS = (
    "Add", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "Conv",
    "Div", "Dropout", "Exp", "Flatten", "Gather", "Gemm", "GlobalAveragePool", "Identity",
    "LeakyRelu", "MatMul", "MaxPool", "Mul", "Neg", "PRelu", "ReduceMean", "Relu", "Reshape",
    "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Split", "Sqrt", "Squeeze", "Sub",
    "Tanh", "Transpose", "Unsqueeze")


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads_2d(x: Any, attrs: dict[str, Any], kernel: Sequence[int], strides: Sequence[int],
             dilations: Sequence[int]) -> list[int]:
    """ONNX pads ``[top, left, bottom, right]`` for a 2-D window op, auto_pad resolved."""
    auto = attrs.get("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        return list(attrs.get("pads", [0, 0, 0, 0]))
    if auto == "VALID":
        return [0, 0, 0, 0]
    begin, end = [], []
    for size, k, s, d in zip(x.shape[2:], kernel, strides, dilations, strict=True):
        out = -(-size // s)
        total = max(0, (out - 1) * s + (k - 1) * d + 1 - size)
        small, large = total // 2, total - total // 2
        begin.append(large if auto == "SAME_LOWER" else small)
        end.append(small if auto == "SAME_LOWER" else large)
    return begin + end


def _pad(torch: Any, x: Any, pads: list[int], value: float) -> Any:
    top, left, bottom, right = pads
    if not any(pads):
        return x
    return torch.nn.functional.pad(x, (left, right, top, bottom), value=value)


def _conv(torch: Any, x: Any, w: Any, b: Any = None, **a: Any) -> Any:
    kernel = a.get("kernel_shape", list(w.shape[2:]))
    strides = a.get("strides", [1] * len(kernel))
    dilations = a.get("dilations", [1] * len(kernel))
    x = _pad(torch, x, _pads_2d(x, a, kernel, strides, dilations), 0.0)
    return torch.nn.functional.conv2d(x, w, b, stride=strides, dilation=dilations,
                                      groups=a.get("group", 1))


def _pool(torch: Any, x: Any, kind: str, **a: Any) -> Any:
    kernel = a["kernel_shape"]
    strides = a.get("strides", [1] * len(kernel))
    pads = _pads_2d(x, a, kernel, strides, a.get("dilations", [1] * len(kernel)))
    ceil = bool(a.get("ceil_mode", 0))
    if kind == "max":
        x = _pad(torch, x, pads, float("-inf"))
        return torch.nn.functional.max_pool2d(x, kernel, strides, ceil_mode=ceil)
    if any(pads) and not a.get("count_include_pad", 0):
        raise ModelError("AveragePool with padding that excludes the pad: unsupported")
    x = _pad(torch, x, pads, 0.0)
    return torch.nn.functional.avg_pool2d(x, kernel, strides, ceil_mode=ceil)


def _softmax(torch: Any, x: Any, opset: int, axis: int | None = None) -> Any:
    if opset >= 13:
        return torch.softmax(x, dim=-1 if axis is None else axis)
    axis = 1 if axis is None else axis % x.dim()  # before opset 13: over the flattened tail
    flat = x.reshape(*x.shape[:axis], -1)
    return torch.softmax(flat, dim=-1).reshape(x.shape)


def _reshape(x: Any, shape: Any, allowzero: int = 0) -> Any:
    dims = [int(v) for v in shape.tolist()]
    if not allowzero:
        dims = [x.shape[i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def _gemm(torch: Any, a: Any, b: Any, c: Any = None, **at: Any) -> Any:
    a = a.t() if at.get("transA", 0) else a
    b = b.t() if at.get("transB", 0) else b
    y = at.get("alpha", 1.0) * (a @ b)
    return y if c is None else y + at.get("beta", 1.0) * c


def _resize(torch: Any, x: Any, roi: Any = None, scales: Any = None, sizes: Any = None,
            **a: Any) -> Any:
    mode = a.get("mode", b"nearest")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    ctm = a.get("coordinate_transformation_mode", b"half_pixel")
    ctm = ctm.decode() if isinstance(ctm, bytes) else ctm
    if sizes is not None and sizes.numel():
        size = [int(v) for v in sizes.tolist()[2:]]
    else:
        factors = [float(v) for v in scales.tolist()[2:]]
        size = [round(n * f) for n, f in zip(x.shape[2:], factors, strict=True)]
    if mode == "nearest":
        # integer up-scales: every ONNX nearest variant picks floor(out / factor)
        if any(o % n for o, n in zip(size, x.shape[2:], strict=True)):
            raise ModelError(f"Resize nearest to {size} from {list(x.shape[2:])}: only "
                             f"integer up-scales are supported")
        return torch.nn.functional.interpolate(x, size=size, mode="nearest")
    if mode == "linear" and ctm in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        return torch.nn.functional.interpolate(x, size=size, mode="bilinear",
                                               align_corners=ctm == "align_corners")
    raise ModelError(f"Resize mode {mode!r} with {ctm!r}: unsupported")


def _slice(x: Any, starts: Any, ends: Any, axes: Any = None, steps: Any = None) -> Any:
    starts, ends = starts.tolist(), ends.tolist()
    axes = list(range(len(starts))) if axes is None else axes.tolist()
    steps = [1] * len(starts) if steps is None else steps.tolist()
    index = [slice(None)] * x.dim()
    for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
        if st != 1:
            raise ModelError(f"Slice with step {st}: unsupported")
        n = x.shape[ax]
        index[ax] = slice(max(-n, min(s, n)), max(-n, min(e, n)))
    return x[tuple(index)]


def _split(torch: Any, x: Any, split: Any = None, axis: int = 0, **a: Any) -> tuple:
    sizes = split.tolist() if split is not None else a.get("split")
    if sizes is None:
        parts = a.get("num_outputs")
        return torch.chunk(x, parts, dim=axis)
    return torch.split(x, [int(v) for v in sizes], dim=axis)


def _int_list(t: Any, a: dict[str, Any], key: str) -> list[int]:
    return [int(v) for v in t.tolist()] if t is not None else list(a.get(key, []))


def _ops(torch: Any, opset: int) -> dict[str, Callable[..., Any]]:
    f = torch.nn.functional
    return {
        "Add": lambda a, b: a + b, "Sub": lambda a, b: a - b,
        "Mul": lambda a, b: a * b, "Div": lambda a, b: a / b,
        "Neg": lambda x: -x, "Exp": torch.exp, "Sqrt": torch.sqrt,
        "Relu": torch.relu, "Sigmoid": torch.sigmoid, "Tanh": torch.tanh,
        "PRelu": lambda x, slope: torch.where(x >= 0, x, x * slope),
        "LeakyRelu": lambda x, alpha=0.01: f.leaky_relu(x, alpha),
        "Clip": lambda x, lo=None, hi=None, **a: torch.clamp(
            x, lo if lo is not None else a.get("min"), hi if hi is not None else a.get("max")),
        "Identity": lambda x: x, "Dropout": lambda x, *rest, **a: x,
        "Conv": lambda *xs, **a: _conv(torch, *xs, **a),
        "MaxPool": lambda x, **a: _pool(torch, x, "max", **a),
        "AveragePool": lambda x, **a: _pool(torch, x, "avg", **a),
        "GlobalAveragePool": lambda x: x.mean(dim=(2, 3), keepdim=True),
        "BatchNormalization": lambda x, s, b, m, v, epsilon=1e-5, **a: f.batch_norm(
            x, m, v, s, b, training=False, eps=epsilon),
        "Softmax": lambda x, axis=None: _softmax(torch, x, opset, axis),
        "MatMul": torch.matmul, "Gemm": lambda *xs, **a: _gemm(torch, *xs, **a),
        "Transpose": lambda x, perm=None: x.permute(
            *(perm if perm is not None else reversed(range(x.dim())))),
        "Reshape": _reshape,
        "Flatten": lambda x, axis=1: x.reshape(
            int(np.prod(x.shape[:axis], dtype=np.int64)), -1),
        "Concat": lambda *xs, axis: torch.cat(list(xs), dim=axis),
        "Resize": lambda *xs, **a: _resize(torch, *xs, **a),
        "Shape": lambda x: torch.tensor(list(x.shape), dtype=torch.int64),
        "Gather": lambda x, i, axis=0: _gather(torch, x, i, axis),
        "Unsqueeze": lambda x, axes=None, **a: _unsqueeze(x, _int_list(axes, a, "axes")),
        "Squeeze": lambda x, axes=None, **a: x.squeeze(
            tuple(_int_list(axes, a, "axes"))) if (axes is not None or a) else x.squeeze(),
        "Slice": _slice,
        "ReduceMean": lambda x, axes=None, keepdims=1, **a: _reduce_mean(
            x, _int_list(axes, a, "axes"), keepdims),
        "Split": lambda *xs, **a: _split(torch, *xs, **a),
        "Cast": lambda x, to: x.to(_cast_dtype(torch, to, x)),
    }


def _gather(torch: Any, x: Any, index: Any, axis: int) -> Any:
    axis %= x.dim()
    flat = index.reshape(-1).to(x.device)
    flat = torch.where(flat < 0, flat + x.shape[axis], flat)  # ONNX allows negative indices
    picked = torch.index_select(x, axis, flat)
    return picked.reshape(*x.shape[:axis], *index.shape, *x.shape[axis + 1:])


def _reduce_mean(x: Any, axes: list[int], keepdims: int) -> Any:
    dims = tuple(axes) if axes else tuple(range(x.dim()))
    return x.mean(dim=dims, keepdim=bool(keepdims))


def _unsqueeze(x: Any, axes: list[int]) -> Any:
    for ax in sorted(a % (x.dim() + len(axes)) for a in axes):
        x = x.unsqueeze(ax)
    return x


def _cast_dtype(torch: Any, to: int, x: Any) -> Any:
    import onnx

    if to in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE):
        return x.dtype if x.is_floating_point() else torch.float32
    if to == onnx.TensorProto.INT64:
        return torch.int64
    if to == onnx.TensorProto.INT32:
        return torch.int32
    raise ModelError(f"Cast to ONNX type {to}: unsupported")


class TorchOnnxGraph:
    """An ONNX graph executed with torch on ``device``: ``run(output_names, feeds)`` like an
    ONNX Runtime session, inputs and outputs as float32 numpy arrays.

    Raises ModelError when the file cannot be read, the graph uses an operator outside
    :data:`OPS`, or ``precision`` is unknown. :meth:`run` keeps no state on ``self``, so the
    cameras sharing a detector may call it from their own threads.
    """

    def __init__(self, model_path: Path, device: str = "cpu", precision: str = "fp32") -> None:
        import onnx
        import onnx.numpy_helper
        import torch

        if precision not in PRECISIONS:
            raise ModelError(f"precision: expected one of {PRECISIONS}, got {precision!r}")
        try:
            model = onnx.load(str(model_path))
        except Exception as err:  # protobuf raises its own untyped errors
            raise ModelError(f"cannot read ONNX graph {model_path}: {err}") from err
        self._torch = torch
        self._device = torch.device(device)
        self._dtype = torch.float16 if precision == "fp16" else torch.float32
        self.precision = precision
        if self._device.type == "cuda":
            disable_tf32(torch)
        opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                    default=13)
        self._ops = _ops(torch, opset)
        graph = model.graph
        unknown = sorted({n.op_type for n in graph.node if n.op_type not in self._ops
                          and n.op_type != "Constant"})
        if unknown:
            raise ModelError(f"{model_path}: the torch graph runner does not support "
                             f"operators {unknown}; use detector.runtime.backend onnxruntime")
        self._consts: dict[str, Any] = {}
        for init in graph.initializer:
            self._consts[init.name] = self._tensor(onnx.numpy_helper.to_array(init))
        self._nodes = []
        for node in graph.node:
            attrs = _attrs(node)
            if node.op_type == "Constant":
                self._consts[node.output[0]] = self._tensor(_constant(model_path, attrs))
                continue
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in attrs.items()}
            self._nodes.append((self._ops[node.op_type], list(node.input), list(node.output),
                                attrs))
        init_names = set(self._consts)
        self.inputs = [_Io(i.name, _dims(i)) for i in graph.input if i.name not in init_names]
        self.outputs = [_Io(o.name, _dims(o)) for o in graph.output]

    def _tensor(self, array: np.ndarray) -> Any:
        torch = self._torch
        if np.issubdtype(array.dtype, np.floating):
            return torch.from_numpy(np.array(array, dtype=np.float32)).to(self._device,
                                                                          self._dtype)
        return torch.from_numpy(np.array(array))  # shapes, axes, indices: CPU

    def get_inputs(self) -> list[_Io]:
        return self.inputs

    def get_outputs(self) -> list[_Io]:
        return self.outputs

    def run(self, output_names: Sequence[str] | None,
            feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Outputs ``output_names`` (all when None) as float32 numpy, for numpy ``feeds``."""
        torch = self._torch
        values = dict(self._consts)
        for name, array in feeds.items():
            values[name] = torch.from_numpy(np.ascontiguousarray(array)).to(self._device,
                                                                            self._dtype)
        with torch.inference_mode():
            for fn, inputs, outputs, attrs in self._nodes:
                args = [values[n] if n else None for n in inputs]
                while args and args[-1] is None:
                    args.pop()
                result = fn(*args, **attrs)
                if isinstance(result, tuple | list):
                    values.update(zip(outputs, result, strict=False))
                else:
                    values[outputs[0]] = result
        names = output_names or [o.name for o in self.outputs]
        return [values[n].float().cpu().numpy() if values[n].is_floating_point()
                else values[n].cpu().numpy() for n in names]


def _constant(model_path: Path, attrs: dict[str, Any]) -> np.ndarray:
    import onnx.numpy_helper

    if "value" in attrs:
        return onnx.numpy_helper.to_array(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32),
                       ("value_int", np.int64), ("value_ints", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    raise ModelError(f"{model_path}: Constant node with {sorted(attrs)}: unsupported")


class _Io:
    """Name and shape of a graph input or output (ints, or strings for symbolic dims)."""

    def __init__(self, name: str, shape: list) -> None:
        self.name, self.shape = name, shape


def _dims(value_info: Any) -> list:
    dims = value_info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in dims]


def disable_tf32(torch: Any) -> None:
    """Turn TF32 off for cuDNN convolutions (on by default) and matmuls, process-wide, so
    fp32 on CUDA is IEEE fp32 and matches the CPU. Only ever turns it off (no save/restore
    that could race between camera threads); fp16 work is unaffected."""
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
