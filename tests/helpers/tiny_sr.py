"""A tiny real ONNX x4 super-resolution model with a known output, for tests.

A 1x1 convolution copies each channel 16 times and DepthToSpace(4) rearranges them: an exact
x4 nearest-neighbour upscale, with the sub-pixel layout real SR networks end with.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engines.manifest import ModelManifest, sha256_file, write_manifest

SCALE = 4
INPUT_PX = 16
OUTPUT_PX = INPUT_PX * SCALE


def build_sr_onnx(path: Path, channels: int, gains: Sequence[float] | None = None) -> Path:
    """x4 nearest-neighbour generator; ``gains[c]`` multiplies channel c (default 1)."""
    gains = [1.0] * channels if gains is None else list(gains)
    block = SCALE * SCALE
    # DepthToSpace CRD reads output channel c from conv channels c*16 .. c*16+15
    weight = np.zeros((channels * block, channels, 1, 1), np.float32)
    for j in range(channels * block):
        weight[j, j // block] = gains[j // block]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                      ["N", channels, INPUT_PX, INPUT_PX])
    y = helper.make_tensor_value_info("sr", TensorProto.FLOAT,
                                      ["N", channels, OUTPUT_PX, OUTPUT_PX])
    nodes = [helper.make_node("Conv", ["input", "weight"], ["features"]),
             helper.make_node("DepthToSpace", ["features"], ["sr"], blocksize=SCALE,
                              mode="CRD")]
    graph = helper.make_graph(nodes, "nn_x4", [x], [y],
                              [numpy_helper.from_array(weight, "weight")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def write_sr_manifest(onnx_path: Path, manifest_path: Path, color: str = "gray",
                      scale_factor: int = SCALE, mean: float = 0.5, std: float = 0.25,
                      task: str = "sr") -> Path:
    channels = 1 if color == "gray" else 3
    manifest = ModelManifest(
        name=manifest_path.stem, task=task, onnx_file=onnx_path.name,
        input_size_hw=(INPUT_PX, INPUT_PX), channels=channels, color=color,
        mean=(mean,) * channels, std=(std,) * channels,
        class_names=("neutral", "happy") if task == "emotion" else (),
        scale_factor=scale_factor if task == "sr" else None,
        onnx_sha256=sha256_file(onnx_path), input_name="input", output_name="sr")
    return write_manifest(manifest, manifest_path)
