"""ONNX export with a dynamic batch axis and a parity check against torch."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.eval.metrics import softmax
from pipeline.errors import ModelError

log = logging.getLogger("engines.build")


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: Path,
                input_name: str = "input", output_name: str = "logits", opset: int = 18,
                dynamic_axes: dict[int, Any] | None = None) -> Path:
    """Export ``model`` (eval mode, CPU). ``dynamic_axes`` maps input axes to
    ``torch.export.Dim`` expressions; by default batch is the only dynamic axis."""
    model = model.eval().cpu()
    path.parent.mkdir(parents=True, exist_ok=True)
    if dynamic_axes is None:
        dynamic_axes = {0: torch.export.Dim("batch", min=1, max=4096)}
    # The exporter reports progress on stdout and emits deprecation noise from torch internals.
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(model, (example,), str(path), input_names=[input_name],
                          output_names=[output_name], dynamic_shapes={"x": dynamic_axes},
                          dynamo=True, opset_version=opset, external_data=False)
    return path


def max_prob_diff(got: np.ndarray, ref: np.ndarray) -> float:
    """Max abs difference of the softmax probabilities of two logit arrays."""
    return float(np.abs(softmax(got) - softmax(ref)).max())


def check_parity(model: torch.nn.Module, onnx_path: Path, inputs: list[np.ndarray],
                 input_name: str = "input", output_name: str = "logits",
                 tol: float = 1e-4, distance: Callable[[np.ndarray, np.ndarray], float]
                 = max_prob_diff, what: str = "|p_onnx - p_torch|") -> float:
    """Max ``distance(onnx output, torch output)`` over ``inputs``; raise above ``tol``.

    ``what`` names the distance in messages (default: softmax probabilities of logits)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    model = model.eval().cpu()
    for x in inputs:
        with torch.inference_mode():
            ref = model(torch.from_numpy(x)).numpy()
        (got,) = sess.run([output_name], {input_name: x})
        if got.shape != ref.shape:
            raise ModelError(f"{onnx_path}: parity: expected output shape {ref.shape}, "
                             f"got {got.shape}")
        worst = max(worst, distance(got, ref))
    if worst > tol:
        raise ModelError(f"{onnx_path}: parity: expected max {what} <= {tol}, "
                         f"got {worst:.3e}")
    log.info("parity ok: max %s = %.3e over %d batches", what, worst, len(inputs))
    return worst
