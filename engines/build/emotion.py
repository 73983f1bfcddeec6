"""Build the shipped emotion artifact from a training checkpoint.

Steps: load the checkpoint (``weights_only=True``), export ONNX (dynamic batch), check parity
with torch on random and real faces, evaluate accuracy by face size and fit the temperature on
the calibration split (FER2013Valid), then write ``OUT.onnx``, ``OUT.pt`` (state-dict for
the torch backend) and ``OUT.json`` (the manifest).
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
from engines.models.resnet import ResNetConfig, build_resnet
from engines.preprocess import InputSpec, faces_to_input
from engines.runtime import create_engine_from_manifest
from pipeline.errors import ModelError

log = logging.getLogger("engines.build")
PARITY_TOL = 1e-4


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as err:
        raise ModelError(f"{path}: cannot load checkpoint: {err}") from err
    for key in ("model", "architecture", "input_spec", "class_names"):
        if key not in ckpt:
            raise ModelError(f"{path}: expected checkpoint key {key!r}, got {sorted(ckpt)}")
    return ckpt


def _spec(ckpt: dict[str, Any]) -> InputSpec:
    s = ckpt["input_spec"]
    return InputSpec(tuple(s["input_size_hw"]), s["color"], tuple(s["mean"]), tuple(s["std"]))


def build_emotion(checkpoint: Path, out_base: Path, calib_data: Path | None = None,
                  eval_sizes: tuple[int, ...] = (48, 32, 24, 16, 12),
                  calib_sizes: tuple[int, ...] = (48, 32, 24, 16, 12),
                  restore: str = "bilinear", threads: int = 2,
                  command: str | None = None, name: str | None = None,
                  tta_hflip: bool = False) -> ModelManifest:
    """``tta_hflip`` bakes mirror-image averaging into the exported network (architecture)."""
    t0 = time.time()
    torch.set_num_threads(threads)
    ckpt = load_checkpoint(checkpoint)
    arch = replace(ResNetConfig.from_dict(ckpt["architecture"]), tta_hflip=tta_hflip)
    model = build_resnet(arch)
    model.load_state_dict(ckpt["model"])
    model.eval()
    spec = _spec(ckpt)
    class_names = tuple(ckpt["class_names"])
    c = 1 if spec.color == "gray" else 3
    h, w = spec.input_size_hw
    onnx_path = out_base.with_suffix(".onnx")
    weights_path = out_base.with_suffix(".pt")
    manifest_path = out_base.with_suffix(".json")
    export_onnx(model, torch.zeros(2, c, h, w), onnx_path)

    rng = np.random.default_rng(0)
    parity_inputs = [rng.normal(0, 1, (n, c, h, w)).astype(np.float32) for n in (1, 7, 32)]
    dataset = None
    if calib_data is not None:
        from engines.train.ferplus import load_dataset

        dataset = load_dataset(calib_data, image_size=48)
        if dataset.class_names != class_names:
            raise ModelError(f"{calib_data}: expected classes {list(class_names)}, got "
                             f"{list(dataset.class_names)}")
        parity_inputs.append(faces_to_input(list(dataset.images[:64]), spec))
    parity = check_parity(model, onnx_path, parity_inputs, tol=PARITY_TOL)

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    torch.save(state, weights_path)

    training: dict[str, Any] = {
        "checkpoint": str(checkpoint), "epochs_completed": (ckpt.get("metrics") or {}).get("epoch"),
        "config": ckpt.get("config", {}), "checkpoint_metrics": ckpt.get("metrics", {}),
        "seed": (ckpt.get("config") or {}).get("seed"),
    }
    run_json = Path(checkpoint).parent / "run.json"
    if run_json.is_file():
        run = json.loads(run_json.read_text())
        training.update({k: run.get(k) for k in ("command", "machine", "wall_s", "device",
                                                 "torch", "data", "train_images")})
    manifest = ModelManifest(
        name=name or out_base.name, task="emotion", onnx_file=onnx_path.name,
        input_size_hw=(int(h), int(w)), channels=c, color=spec.color, mean=spec.mean,
        std=spec.std, class_names=class_names, temperature=1.0,
        checkpoint_sha256=sha256_file(checkpoint), onnx_sha256=sha256_file(onnx_path),
        architecture=arch.to_dict(), weights_file=weights_path.name,
        weights_sha256=sha256_file(weights_path), training=training,
        metrics={"parity_max_abs_prob_diff": parity}, manifest_path=manifest_path)

    if dataset is not None:
        from engines.eval.emotion import evaluate_sizes, fit_pooled_temperature, size_row

        engine = create_engine_from_manifest(manifest, "onnxruntime", "cpu", threads)
        sizes = tuple(dict.fromkeys(tuple(eval_sizes) + tuple(calib_sizes)))
        rows, logits = evaluate_sizes(engine.infer, dataset, manifest, sizes, restore)
        fit = fit_pooled_temperature({s: logits[s] for s in calib_sizes}, dataset.labels)
        t = fit["temperature"]
        rows = [size_row(logits[s], dataset.labels, class_names, s, restore, t)
                for s in eval_sizes]
        manifest = replace(manifest, temperature=t, metrics={
            **manifest.metrics,
            "data": str(calib_data), "n": len(dataset), "label": "majority vote",
            "accuracy_by_size": [{k: r[k] for k in ("size_px", "restore", "accuracy", "n",
                                                    "ece", "nll")} for r in rows],
            "per_class_recall_48": rows[0]["per_class_recall"] if rows else {},
            "temperature_fit": fit,
        })
    manifest = replace(manifest, training={
        **manifest.training, "build_command": command,
        "build_machine": f"{platform.machine()} {platform.node()}",
        "build_wall_s": time.time() - t0})
    write_manifest(manifest, manifest_path)
    size_mb = (onnx_path.stat().st_size + weights_path.stat().st_size) / 1e6
    log.info("wrote %s (+ .onnx, .pt; %.1f MB), temperature %.3f", manifest_path, size_mb,
             manifest.temperature)
    return load_manifest(manifest_path, expect_task="emotion")
