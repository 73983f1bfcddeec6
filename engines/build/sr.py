"""Build the shipped SR artifact from a training checkpoint.

    python -m engines.build sr --checkpoint runs/sr/sr_generator/last.pt \
        --out engines/weights/sr_generator --input-size 24 [--metrics-json runs/eval/sr_cctv.json]

Steps: load the checkpoint (``weights_only=True``) and its EMA generator, export ONNX with a
dynamic batch axis and dynamic (even) height / width (the manifest fixes the size the
pipeline feeds, ``--input-size``; evaluation may run other sizes), check parity with torch on
random and face-like inputs at the manifest size and at another size, then write
``OUT.onnx``, ``OUT.pt`` (the EMA generator's state dict, for fine-tuning with ``--init`` and
for a torch backend) and ``OUT.json`` (the manifest: scale, channels, normalisation, training
data, metrics). Evaluation JSONs given with ``--metrics-json`` are folded into the manifest's
metrics under their file stem.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engines.build.onnx_export import check_parity, export_onnx
from engines.manifest import ModelManifest, load_manifest, sha256_file, write_manifest
from engines.models.generator import Generator, build_generator
from pipeline.errors import ModelError

log = logging.getLogger("engines.build")
PARITY_TOL = 2e-3  # max |onnx - torch| in [0, 1] intensity units (0.5 grey level)
MAX_ARTIFACT_MB = 25.0


def load_sr_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as err:
        raise ModelError(f"{path}: cannot load checkpoint: {err}") from err
    for key in ("generator_ema", "architecture", "input_spec"):
        if key not in ckpt:
            raise ModelError(f"{path}: expected SR checkpoint key {key!r}, got {sorted(ckpt)}")
    return ckpt


def export_sr_onnx(gen: Generator, path: Path, input_size: int, input_name: str = "input",
                   output_name: str = "sr", opset: int = 18) -> Path:
    """Export with dynamic batch and dynamic even spatial size (multiples of the encoder
    downsampling)."""
    mult = gen.cfg.min_input_multiple
    h = torch.export.Dim("h", min=2, max=1024 // mult)
    w = torch.export.Dim("w", min=2, max=1024 // mult)
    axes = {0: torch.export.Dim("batch", min=1, max=4096), 2: mult * h, 3: mult * w}
    example = torch.zeros(2, gen.cfg.in_channels, input_size, input_size)
    return export_onnx(gen, example, path, input_name, output_name, opset, dynamic_axes=axes)


def check_sr_parity(gen: Generator, onnx_path: Path, inputs: list[np.ndarray],
                    std: float, input_name: str = "input", output_name: str = "sr",
                    tol: float = PARITY_TOL) -> float:
    """Max |onnx - torch| over ``inputs`` in [0, 1] intensity units; raise above ``tol``."""
    return check_parity(gen, onnx_path, inputs, input_name, output_name, tol,
                        distance=lambda got, ref: float(np.abs(got - ref).max()) * std,
                        what="|sr_onnx - sr_torch| (unit intensity)")


def _face_like(rng: np.random.Generator, n: int, c: int, size: int, mean: float,
               std: float) -> np.ndarray:
    """Smooth random images in the normalised range (closer to faces than white noise)."""
    import cv2

    imgs = []
    for _ in range(n * c):
        small = rng.random((4, 4)).astype(np.float32)
        imgs.append(cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC))
    x = np.clip(np.stack(imgs).reshape(n, c, size, size), 0, 1)
    return ((x - mean) / std).astype(np.float32)


def _metrics_from(paths: list[Path], onnx_sha256: str | None) -> dict[str, Any]:
    """Evaluation JSONs by file stem; refuse one measured on a different ONNX file."""
    out = {}
    for path in paths:
        data = json.loads(Path(path).read_text())
        measured = (data.get("model") or data.get("sr_model") or {})
        sha = measured.get("onnx_sha256") if isinstance(measured, dict) else None
        if onnx_sha256 and sha and sha != onnx_sha256:
            raise ModelError(f"{path}: expected metrics of ONNX {onnx_sha256[:12]}, got "
                             f"{sha[:12]}")
        out[Path(path).stem] = data
    return out


def attach_metrics(manifest_path: Path, metrics_json: list[Path]) -> ModelManifest:
    """Record evaluation JSONs in an already built manifest (the ONNX is not touched)."""
    m = load_manifest(manifest_path, expect_task="sr")
    metrics = {**m.metrics, **_metrics_from(metrics_json, m.onnx_sha256)}
    write_manifest(replace(m, metrics=metrics), manifest_path)
    return load_manifest(manifest_path, expect_task="sr")


def build_sr(checkpoint: Path, out_base: Path, input_size: int = 24,
             metrics_json: list[Path] | None = None, command: str | None = None,
             name: str | None = None, threads: int = 2) -> ModelManifest:
    t0 = time.time()
    torch.set_num_threads(threads)
    ckpt = load_sr_checkpoint(checkpoint)
    gen = build_generator(ckpt["architecture"])
    gen.load_state_dict(ckpt["generator_ema"])
    gen.eval()
    spec = ckpt["input_spec"]
    scale = int(gen.cfg.scale)
    if input_size % gen.cfg.min_input_multiple:
        raise ModelError(f"--input-size {input_size}: expected a multiple of "
                         f"{gen.cfg.min_input_multiple} for this generator")
    c = gen.cfg.in_channels
    onnx_path = out_base.with_suffix(".onnx")
    weights_path = out_base.with_suffix(".pt")
    manifest_path = out_base.with_suffix(".json")
    export_sr_onnx(gen, onnx_path, input_size)

    rng = np.random.default_rng(0)
    mean, std = float(spec["mean"][0]), float(spec["std"][0])
    inputs = [rng.normal(0, 1, (n, c, input_size, input_size)).astype(np.float32)
              for n in (1, 7, 32)]
    inputs += [_face_like(rng, 16, c, input_size, mean, std),
               _face_like(rng, 4, c, input_size * 2, mean, std),
               _face_like(rng, 3, c, 12, mean, std)]
    parity = check_sr_parity(gen, onnx_path, inputs, std)

    state = {k: v.detach().cpu().contiguous() for k, v in gen.state_dict().items()}
    torch.save(state, weights_path)
    size_mb = (onnx_path.stat().st_size + weights_path.stat().st_size) / 1e6
    if size_mb > MAX_ARTIFACT_MB:
        raise ModelError(f"{out_base}: expected the artifact under {MAX_ARTIFACT_MB} MB, got "
                         f"{size_mb:.1f} MB")

    cfg = ckpt.get("config", {})
    training: dict[str, Any] = {
        "checkpoint": str(checkpoint), "checkpoint_step": ckpt.get("step"),
        "method": "self-supervised (Jo & Park): each LR face is its own ground truth, "
                  "downscaled x4 (antialiased bicubic) for the input; one augmentation per "
                  "sample among rot90/180/270, noise, blur, JPEG; L1 + LSGAN + perceptual L1",
        "data": ckpt.get("data", {}), "init": ckpt.get("init"),
        "feature_net": ckpt.get("feature_net"),
        "feature_weights_sha256": ckpt.get("feature_weights_sha256"),
        "config": cfg, "seed": cfg.get("seed"), "checkpoint_metrics": ckpt.get("metrics", {}),
        "discriminator_architecture": ckpt.get("discriminator_architecture"),
        "exported": "EMA generator",
    }
    run_json = Path(checkpoint).parent / "run.json"
    if run_json.is_file():
        run = json.loads(run_json.read_text())
        training.update({k: run.get(k) for k in ("command", "machine", "wall_s", "device",
                                                 "torch", "train_faces", "stop_reason")})
    metrics: dict[str, Any] = {"parity_max_abs_diff_unit": parity,
                               "parity_inputs": "random N(0,1) and smooth images, sizes "
                                                f"{input_size}, {input_size * 2}, 12"}
    metrics.update(_metrics_from(list(metrics_json or []), None))
    manifest = ModelManifest(
        name=name or out_base.name, task="sr", onnx_file=onnx_path.name,
        input_size_hw=(input_size, input_size), channels=c, color=spec["color"],
        mean=tuple(float(v) for v in spec["mean"]), std=tuple(float(v) for v in spec["std"]),
        scale_factor=scale, checkpoint_sha256=sha256_file(checkpoint),
        onnx_sha256=sha256_file(onnx_path), input_name="input", output_name="sr",
        architecture=gen.cfg.to_dict(), weights_file=weights_path.name,
        weights_sha256=sha256_file(weights_path),
        training={**training, "build_command": command,
                  "build_machine": f"{platform.machine()} {platform.node()}",
                  "build_wall_s": time.time() - t0},
        metrics=metrics, manifest_path=manifest_path)
    write_manifest(manifest, manifest_path)
    log.info("wrote %s (+ .onnx, .pt; %.2f MB), x%d, input %dx%d %s", manifest_path, size_mb,
             scale, input_size, input_size, spec["color"])
    return load_manifest(manifest_path, expect_task="sr")
