"""Evaluate a face SR generator against bicubic, on the paper's terms and on CCTV terms.

    python -m engines.eval.sr --model engines/weights/sr_generator.json \
        --data ../shared/data/faces_hr/london_neutral --scale 4 --hr-size 64,96,128 \
        --json runs/eval/sr_cctv.json [--limit N] [--inception-onnx PATH]

Each face is centre-cropped square and resized to the HR size (antialiased bicubic), then
downscaled x``scale`` (antialiased bicubic) to make the input, and restored by the model and
by bicubic (``cv2.INTER_CUBIC``). Colour faces go through the model as the pipeline runs it
(:func:`engines.sr_io`-style: a luminance model restores Y, chroma is bicubic).

Rows ``{"method", "scale", "hr_size", "psnr", "ssim", "n", "fd_emotion_resnet"[, "fid"]}``:

- ``psnr`` / ``ssim``: on the luminance (BT.601 Y) channel, SSIM with an 11x11 Gaussian
  window (sigma 1.5), the usual SR convention;
- ``fd_emotion_resnet`` (realism, lower is better): Frechet distance between restored and
  HR images of the pooled final-stage features of the project's emotion ResNet (not
  ImageNet Inception, so not comparable with published FID numbers). Features are taken on
  tiles of ``--fd-tile`` px (the whole face when it is smaller), which keeps the
  high-frequency detail that a resize to 48 px would erase;
- ``fid``: only with ``--inception-onnx``: an ONNX Inception-v3 feature extractor taking
  (N, 3, 299, 299) RGB in [-1, 1] and returning the 2048-d pool features (pytorch-fid
  convention). None can be downloaded here.

A side-by-side picture (LR nearest-upscaled | bicubic | SR | HR) of a few faces is written
next to the JSON. ``--model`` is an SR manifest (its ONNX runs with dynamic spatial size in
ONNX Runtime) or a training checkpoint (``last.pt``, the EMA generator in torch).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.eval.report import command_line, print_table, write_json
from engines.train.sr_data import IMAGE_EXTS, center_square, resize_bicubic_aa

log = logging.getLogger("engines.eval.sr")
SrFn = Callable[[np.ndarray], np.ndarray]  # (N, h, w) uint8 luma or (N, h, w, 3) -> upscaled


def load_faces(folder: Path, limit: int | None = None) -> tuple[list[np.ndarray], list[str]]:
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if limit is not None:
        paths = paths[:limit]
    faces, names = [], []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            log.warning("skipping unreadable %s", p)
            continue
        faces.append(center_square(img))
        names.append(p.name)
    if not faces:
        raise FileNotFoundError(f"{folder}: expected face images, found none")
    return faces, names


def luma(img_bgr: np.ndarray) -> np.ndarray:
    return img_bgr if img_bgr.ndim == 2 else cv2.cvtColor(img_bgr, cv2.COLOR_BGR2YCrCb)[:, :, 0]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(255.0 ** 2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, data_range=255, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
    from scipy import linalg

    mu_a, mu_b = feats_a.mean(0), feats_b.mean(0)
    cov_a = np.cov(feats_a, rowvar=False)
    cov_b = np.cov(feats_b, rowvar=False)
    covmean = linalg.sqrtm(cov_a @ cov_b)
    if not np.isfinite(covmean).all():
        eps = np.eye(len(cov_a)) * 1e-6
        covmean = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    covmean = covmean.real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b)
                 - 2 * np.trace(covmean))


def tiles(img: np.ndarray, tile: int) -> list[np.ndarray]:
    h = img.shape[0]
    if h <= tile:
        return [img]
    n = h // tile
    return [img[i * tile:(i + 1) * tile, j * tile:(j + 1) * tile]
            for i in range(n) for j in range(n)]


class EmotionFeatures:
    """Pooled final-stage features of the emotion ResNet (torch, any input size)."""

    def __init__(self, manifest_path: Path, threads: int = 2) -> None:
        import torch

        from engines.models.resnet import build_resnet

        meta = json.loads(Path(manifest_path).read_text())
        self._torch = torch
        torch.set_num_threads(threads)
        net = build_resnet(meta["architecture"])
        weights = Path(manifest_path).parent / meta["weights_file"]
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.net = net.eval()
        self.mean, self.std = float(meta["mean"][0]), float(meta["std"][0])
        self.name = meta.get("name", "emotion_resnet")
        self.weights_sha256 = meta.get("weights_sha256")

    def __call__(self, gray_tiles: Sequence[np.ndarray]) -> np.ndarray:
        torch = self._torch
        x = np.stack(gray_tiles).astype(np.float32)[:, None] / 255.0
        x = (x - self.mean) / self.std
        outs = []
        with torch.inference_mode():
            for i in range(0, len(x), 64):
                h = self.net.stages(self.net.stem(torch.from_numpy(x[i:i + 64])))
                outs.append(torch.flatten(self.net.pool(h), 1).numpy())
        return np.concatenate(outs).astype(np.float64)


class InceptionOnnx:
    def __init__(self, path: Path, threads: int = 2) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input = self.sess.get_inputs()[0].name

    def __call__(self, images_bgr: Sequence[np.ndarray]) -> np.ndarray:
        outs = []
        for img in images_bgr:
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else \
                cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
            rgb = cv2.resize(rgb, (299, 299), interpolation=cv2.INTER_LINEAR)
            x = (rgb.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]
            outs.append(np.asarray(self.sess.run(None, {self.input: x})[0]).reshape(1, -1))
        return np.concatenate(outs).astype(np.float64)


def sr_fn_from_model(model: Path, threads: int = 2) -> tuple[SrFn, dict[str, Any]]:
    """A function restoring a batch of same-size inputs, and a description of the model.

    The function takes and returns arrays in the model colour (luma (N, h, w) for gray
    models, (N, h, w, 3) RGB for rgb models).
    """
    from engines.train.sr_data import from_unit_tensor_layout, to_unit_tensor_layout

    model = Path(model)
    if model.suffix == ".json":
        import onnxruntime as ort

        from engines.manifest import load_manifest

        m = load_manifest(model, expect_task="sr")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(m.onnx_path), opts, providers=["CPUExecutionProvider"])

        def run(x_u8: np.ndarray) -> np.ndarray:
            outs = []
            for i in range(0, len(x_u8), 16):
                x = to_unit_tensor_layout(x_u8[i:i + 16], m.mean, m.std)
                (y,) = sess.run([m.output_name], {m.input_name: x})
                outs.append(from_unit_tensor_layout(y, m.mean, m.std))
            return np.concatenate(outs)

        return run, {"model": str(model), "name": m.name, "color": m.color,
                     "scale_factor": m.scale_factor, "onnx_sha256": m.onnx_sha256,
                     "backend": "onnxruntime"}
    import torch

    from engines.models.generator import build_generator
    from engines.train.sr import load_generator_weights

    torch.set_num_threads(threads)
    arch, state = load_generator_weights(model)
    ckpt = torch.load(model, map_location="cpu", weights_only=True)
    spec = ckpt["input_spec"]
    gen = build_generator(arch)
    gen.load_state_dict(state)
    gen.eval()

    def run_torch(x_u8: np.ndarray) -> np.ndarray:
        outs = []
        with torch.inference_mode():
            for i in range(0, len(x_u8), 16):
                x = torch.from_numpy(to_unit_tensor_layout(x_u8[i:i + 16], spec["mean"],
                                                          spec["std"]))
                outs.append(from_unit_tensor_layout(gen(x).numpy(), spec["mean"],
                                                    spec["std"]))
        return np.concatenate(outs)

    return run_torch, {"model": str(model), "name": "checkpoint", "color": spec["color"],
                       "scale_factor": arch["scale"], "step": ckpt.get("step"),
                       "backend": "torch"}


def restore_sr(sr: SrFn, lr_bgr: list[np.ndarray], color: str, hr_size: int) -> list[np.ndarray]:
    """Run the model the way the pipeline does: Y through a gray model, chroma bicubic."""
    if color == "gray":
        ycc = [cv2.cvtColor(x, cv2.COLOR_BGR2YCrCb) for x in lr_bgr]
        y_hr = sr(np.stack([y[:, :, 0] for y in ycc]))
        out = []
        for yh, y in zip(y_hr, ycc, strict=True):
            chroma = cv2.resize(np.ascontiguousarray(y[:, :, 1:]), (hr_size, hr_size),
                                interpolation=cv2.INTER_CUBIC)
            out.append(cv2.cvtColor(np.dstack([yh, chroma]), cv2.COLOR_YCrCb2BGR))
        return out
    rgb = sr(np.stack([cv2.cvtColor(x, cv2.COLOR_BGR2RGB) for x in lr_bgr]))
    return [cv2.cvtColor(x, cv2.COLOR_RGB2BGR) for x in rgb]


def side_by_side(rows: list[tuple[np.ndarray, ...]], path: Path, max_side: int = 256) -> Path:
    """LR (nearest) | bicubic | SR | HR per row; panels of 128 to ``max_side`` px (small
    faces are enlarged with nearest neighbour so their pixels stay visible)."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    lines = []
    for lr, bic, sr, hr in rows:
        side = min(max(hr.shape[0], 128), max_side)
        interp_down = cv2.INTER_AREA if hr.shape[0] > side else cv2.INTER_NEAREST
        panels = [cv2.resize(lr, (side, side), interpolation=cv2.INTER_NEAREST)] + [
            cv2.resize(x, (side, side), interpolation=interp_down) for x in (bic, sr, hr)]
        lines.append(np.concatenate(panels, axis=1))
    grid = np.concatenate(lines, axis=0)
    header = np.full((22, grid.shape[1], 3), 255, np.uint8)
    side = grid.shape[1] // 4
    for i, label in enumerate(("LR", "bicubic", "SR", "HR")):
        cv2.putText(header, label, (i * side + 4, 16), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.concatenate([header, grid], axis=0)):
        raise OSError(f"cannot write {path}")
    return path


def evaluate(sr: SrFn, color: str, faces_bgr: list[np.ndarray], scale: int, hr_size: int,
             features: EmotionFeatures | None, fd_tile: int,
             inception: InceptionOnnx | None = None, picture: Path | None = None,
             picture_faces: int = 4) -> list[dict[str, Any]]:
    if hr_size % scale:
        raise ValueError(f"--hr-size {hr_size}: expected a multiple of --scale {scale}")
    lr_size = hr_size // scale
    # ground truth is never upsampled: faces smaller than the HR size sit this size out
    faces_bgr = [f for f in faces_bgr if f.shape[0] >= hr_size]
    if not faces_bgr:
        raise ValueError(f"--hr-size {hr_size}: no face is at least that large")
    hr = [resize_bicubic_aa(f, (hr_size, hr_size)) for f in faces_bgr]
    lr = [resize_bicubic_aa(h, (lr_size, lr_size)) for h in hr]
    t0 = time.time()
    restored = {
        "bicubic": [cv2.resize(x, (hr_size, hr_size), interpolation=cv2.INTER_CUBIC)
                    for x in lr],
        "sr": restore_sr(sr, lr, color, hr_size),
    }
    sr_s = time.time() - t0
    hr_y = [luma(h) for h in hr]
    real_feats = features([t for h in hr_y for t in tiles(h, fd_tile)]) if features else None
    real_incep = inception(hr) if inception else None
    rows = []
    for method, imgs in restored.items():
        ys = [luma(x) for x in imgs]
        row: dict[str, Any] = {
            "method": method, "scale": scale, "hr_size": hr_size, "lr_size": lr_size,
            "psnr": float(np.mean([psnr(a, b) for a, b in zip(ys, hr_y, strict=True)])),
            "ssim": float(np.mean([ssim(a, b) for a, b in zip(ys, hr_y, strict=True)])),
            "n": len(imgs), "metric_channel": "Y (BT.601)",
        }
        if features is not None:
            fake = features([t for y in ys for t in tiles(y, fd_tile)])
            row["fd_emotion_resnet"] = frechet_distance(fake, real_feats)
            row["fd_samples"] = len(fake)
        if inception is not None:
            row["fid"] = frechet_distance(inception(imgs), real_incep)
        rows.append(row)
    rows[-1]["sr_wall_s"] = sr_s
    if picture is not None:
        k = min(picture_faces, len(hr))
        side_by_side([(lr[i], restored["bicubic"][i], restored["sr"][i], hr[i])
                      for i in range(k)], picture)
    return rows


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", type=Path, required=True,
                   help="SR manifest JSON (ONNX) or training checkpoint (.pt)")
    p.add_argument("--data", type=Path, required=True, help="folder of face images")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--hr-size", type=_int_list, default=[256],
                   help="HR size(s), comma-separated (e.g. 64,96,128 or 1024)")
    p.add_argument("--json", type=Path, required=True)
    p.add_argument("--limit", type=int, default=None, help="first N faces (sorted by name)")
    p.add_argument("--emotion-model", type=Path,
                   default=Path("engines/weights/emotion_resnet.json"),
                   help="emotion manifest (with weights_file) for fd_emotion_resnet")
    p.add_argument("--fd-tile", type=int, default=128)
    p.add_argument("--inception-onnx", type=Path, default=None)
    p.add_argument("--picture-faces", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    t0 = time.time()
    sr, model_info = sr_fn_from_model(args.model, args.threads)
    if model_info["scale_factor"] != args.scale:
        raise SystemExit(f"--scale: the model is x{model_info['scale_factor']}, got {args.scale}")
    faces, _names = load_faces(args.data, args.limit)
    features = EmotionFeatures(args.emotion_model, args.threads)
    inception = InceptionOnnx(args.inception_onnx, args.threads) if args.inception_onnx \
        else None
    rows = []
    for hr_size in args.hr_size:
        picture = args.json.with_name(f"{args.json.stem}_side_by_side_{hr_size}.png")
        got = evaluate(sr, model_info["color"], faces, args.scale, hr_size, features,
                       args.fd_tile, inception, picture, args.picture_faces)
        for row in got:
            row["side_by_side_png"] = str(picture)
        rows += got
        for row in got:
            log.info("%s x%d hr %d: psnr %.2f ssim %.4f fd_emotion_resnet %.3f", row["method"],
                     args.scale, hr_size, row["psnr"], row["ssim"], row["fd_emotion_resnet"])
    out = {
        "model": model_info, "data": str(args.data), "n_faces": len(faces),
        "limit": args.limit, "scale": args.scale, "hr_sizes": args.hr_size,
        "downscale": "antialiased bicubic (a=-0.5, PIL/MATLAB convention)",
        "realism_metric": "fd_emotion_resnet: Frechet distance of emotion ResNet pooled "
                          f"features on {args.fd_tile}px tiles (lower is better); not FID",
        "emotion_model_weights_sha256": features.weights_sha256,
        "rows": rows, "wall_s": time.time() - t0,
        "command": command_line("python -m engines.eval.sr", argv),
    }
    write_json(args.json, out)
    print_table(rows, [("method", "method", 8, ""), ("scale", "scale", 5, ""),
                       ("hr", "hr_size", 5, ""), ("psnr", "psnr", 7, ".2f"),
                       ("ssim", "ssim", 7, ".4f"), ("fd_emo", "fd_emotion_resnet", 8, ".3f"),
                       ("n", "n", 4, "")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
