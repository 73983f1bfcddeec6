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


def calibrate(manifest: ModelManifest, logits_fn: Any, dataset: Any, calib_data: Path,
              eval_sizes: tuple[int, ...], calib_sizes: tuple[int, ...], restore: str,
              cctv_points: tuple[tuple[int, float], ...], negative_max_fpr: float | None,
              non_face_max_reject: float, clip: Path | None) -> ModelManifest:
    """Fit logit adjustment, temperature and non-face threshold; attach per-condition metrics."""
    from engines.build.emotion_calibration import (
        fit_negative_bias,
        fit_non_face_threshold,
        negative_bias_vector,
    )
    from engines.emotion_model import emotion_logits, non_face_probability
    from engines.eval.conditions import Condition
    from engines.eval.emotion import condition_logits, condition_row, fit_pooled_temperature

    if cctv_points and clip is None:
        from engines.train.emotion_mix import default_clip

        clip = default_clip()
    clean = [Condition("clean", s) for s in dict.fromkeys(tuple(eval_sizes) + tuple(calib_sizes))]
    cctv = [Condition("cctv", s, float(k)) for s, k in cctv_points]
    raw = condition_logits(logits_fn, dataset, manifest, clean + cctv, restore, clip, seed=0)
    names = dataset.class_names
    bias_fit = None
    if negative_max_fpr is not None and cctv:
        bias_fit = fit_negative_bias(
            {k: emotion_logits(v, manifest) for k, v in raw.items()}, dataset.labels, names,
            negative_max_fpr, report=cctv[0].name)
        beta = bias_fit["beta"]
        manifest = replace(manifest, logit_bias=tuple(float(v) for v in negative_bias_vector(
            manifest.class_names, beta)))
    calib_names = [Condition("clean", s).name for s in calib_sizes] + [c.name for c in cctv]
    fit = fit_pooled_temperature({k: emotion_logits(raw[k], manifest) for k in calib_names},
                                 dataset.labels)
    manifest = replace(manifest, temperature=fit["temperature"])
    non_face_fit = None
    if manifest.non_face_class is not None:
        pooled = np.concatenate([non_face_probability(raw[k], manifest) for k in calib_names])
        threshold = fit_non_face_threshold(pooled, non_face_max_reject)
        manifest = replace(manifest, non_face_threshold=threshold)
        non_face_fit = {"threshold": threshold, "max_face_reject": non_face_max_reject,
                        "faces_rejected_pooled": float((pooled >= threshold).mean()),
                        "conditions": calib_names}
    rows = []
    for cond in [Condition("clean", s) for s in eval_sizes] + cctv:
        lg = raw[cond.name]
        row = condition_row(emotion_logits(lg, manifest), dataset.labels, names,
                            manifest.temperature, non_face_probability(lg, manifest),
                            manifest.non_face_threshold)
        rows.append({"name": cond.name, **cond.describe(), "restore": restore,
                     **{k: row[k] for k in ("accuracy", "n", "ece", "nll", "negative_union",
                                            "per_class_recall")},
                     "faces_rejected_as_non_face": row.get("faces_rejected_as_non_face", 0.0)})
    return replace(manifest, metrics={
        **manifest.metrics, "data": str(calib_data), "n": len(dataset),
        "label": "majority vote", "clip": str(clip) if clip else None,
        "accuracy_by_condition": rows,
        "accuracy_by_size": [{k: r[k] for k in ("size_px", "restore", "accuracy", "n", "ece",
                                                "nll")} for r in rows if r["condition"] == "clean"],
        "per_class_recall_48": rows[0]["per_class_recall"] if rows else {},
        "temperature_fit": fit, "negative_bias_fit": bias_fit, "non_face_fit": non_face_fit,
    })


def build_emotion(checkpoint: Path, out_base: Path, calib_data: Path | None = None,
                  eval_sizes: tuple[int, ...] = (48, 32, 24, 16, 12),
                  calib_sizes: tuple[int, ...] = (48, 32, 24, 16, 12),
                  restore: str = "bilinear", threads: int = 2,
                  command: str | None = None, name: str | None = None,
                  tta_hflip: bool = False, cctv_points: tuple[tuple[int, float], ...] = (),
                  negative_max_fpr: float | None = None, non_face_max_reject: float = 0.01,
                  clip: Path | None = None, non_face_class: str = "not_face") -> ModelManifest:
    """Export, check parity, and fit the post-hoc decisions on ``calib_data``.

    ``tta_hflip`` bakes mirror-image averaging into the exported network (architecture).
    ``cctv_points`` ((size px, kbps), ...) add camera-simulated conditions to the clean sizes
    for the temperature and thresholds. With ``negative_max_fpr`` the negative-emotion logit
    adjustment is fitted so that no condition exceeds that false-positive rate; its recall is
    reported at the first camera point (see :mod:`engines.build.emotion_calibration`). A
    checkpoint with a ``non_face_class`` output gets the threshold that rejects
    ``non_face_max_reject`` of the calibration faces.
    """
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
        emotions = tuple(c for c in class_names if c != non_face_class)
        if dataset.class_names != emotions:
            raise ModelError(f"{calib_data}: expected classes {list(emotions)}, got "
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

    if non_face_class in class_names:
        manifest = replace(manifest, non_face_class=non_face_class)
    if dataset is not None:
        engine = create_engine_from_manifest(manifest, "onnxruntime", "cpu", threads)
        manifest = calibrate(manifest, engine.infer, dataset, calib_data, eval_sizes,
                             calib_sizes, restore, cctv_points, negative_max_fpr,
                             non_face_max_reject, clip)
    manifest = replace(manifest, training={
        **manifest.training, "build_command": command,
        "build_machine": f"{platform.machine()} {platform.node()}",
        "build_wall_s": time.time() - t0})
    write_manifest(manifest, manifest_path)
    size_mb = (onnx_path.stat().st_size + weights_path.stat().st_size) / 1e6
    log.info("wrote %s (+ .onnx, .pt; %.1f MB), temperature %.3f", manifest_path, size_mb,
             manifest.temperature)
    return load_manifest(manifest_path, expect_task="emotion")
