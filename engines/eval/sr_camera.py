"""SR generators on one camera's held-back faces: fidelity and emotion accuracy.

    python -m engines.eval.sr_camera --config configs/train/sr_adapt_camera.yaml \\
        --model generic=engines/weights/sr_generator.json \\
        --model adapted=runs/sr/adapt_pets/last.pt --json runs/eval/sr_adapt_pets.json

The camera is the ``data.camera`` section of an SR training config (its background clip,
codec, bitrate, blur and noise: for an adapted model, the config it was adapted with).
Held-back faces are FER2013Valid (``data.val_dir``), identities never seen in training:

- *fidelity*: camera-domain pairs made as in training (:mod:`engines.train.sr_camera`; the
  face through the camera at ``min_size_px``-``max_size_px`` is the ground truth, through it
  again at 1/scale the input), PSNR and mean absolute error on the luminance against the
  ground truth, for bicubic and each model;
- *emotion*: the same faces through the camera at each ``--sizes`` (one fixed camera: the
  middle of each range of the config), restored as the pipeline does (fitted to the
  generator's 24-px input, x4, area to 48 px; bilinear for the ``bilinear`` row) and read by
  ``--emotion-model``. The classifier is the same for every row, so rows compare generators,
  not pipelines (that is :mod:`engines.eval.sr_cctv_emotion`'s job).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from engines.cctv_sim import CameraSettings, simulate_fixed
from engines.eval.report import command_line, print_table, write_json
from engines.eval.sr_cctv_emotion import bilinear, fit_for_sr, sr_input_px
from engines.train.emotion_mix import default_clip

log = logging.getLogger("engines.eval.sr_camera")


def _named_model(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"--model: expected NAME=PATH, got {text!r}")
    return name, Path(path)


def mae_u8(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def main(argv: list[str] | None = None) -> int:
    from engines.emotion_model import EmotionModel
    from engines.eval.sr import sr_fn_from_model
    from engines.train.sr import _ferplus_faces, camera_pairs, ferplus_root, psnr_u8
    from engines.train.sr_config import load_sr_config

    p = argparse.ArgumentParser(prog="python -m engines.eval.sr_camera", description=__doc__,
                                formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", type=Path, required=True,
                   help="SR training config whose data.camera describes the camera")
    p.add_argument("--model", type=_named_model, action="append", required=True)
    p.add_argument("--emotion-model", type=Path,
                   default=Path("engines/weights/emotion_resnet.json"))
    p.add_argument("--sizes", type=lambda s: [int(v) for v in s.split(",")], default=[16, 24])
    p.add_argument("--val-images", type=int, default=None, help="default: all of them")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, required=True)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s",
                        stream=sys.stderr)
    t0 = time.time()
    from pipeline.errors import ConfigError

    try:
        cfg = load_sr_config(args.config)
    except ConfigError as err:
        print(f"--config: {err}", file=sys.stderr)
        return 2
    if not cfg.data.camera.enabled or cfg.data.val_dir is None:
        print(f"{args.config}: expected data.camera.enabled and a data.val_dir",
              file=sys.stderr)
        return 2
    from engines.train.ferplus import load_dataset_cached

    val_dir = ferplus_root(cfg) / cfg.data.val_dir
    faces = _ferplus_faces(val_dir, cfg)[:args.val_images]
    labels = load_dataset_cached(val_dir, cfg.data.cache_dir, "auto", 48).labels[:len(faces)]
    models = {name: sr_fn_from_model(path, args.threads) for name, path in args.model}

    pairs = camera_pairs(cfg, faces, cfg.seed + 1000)
    fidelity: list[dict[str, Any]] = []
    for hr_size in sorted(pairs.hr):
        lr, hr = pairs.lr[hr_size], pairs.hr[hr_size]
        restored = {"bicubic": np.stack([cv2.resize(x, (hr_size, hr_size),
                                                    interpolation=cv2.INTER_CUBIC) for x in lr])}
        restored.update({name: fn(lr) for name, (fn, _) in models.items()})
        for name, out in restored.items():
            fidelity.append({"hr_px": hr_size, "lr_px": lr.shape[1], "method": name,
                             "psnr_db": psnr_u8(out, hr), "mae": mae_u8(out, hr), "n": len(hr)})

    cam = cfg.data.camera
    settings = CameraSettings(codec="h264", bitrate_kbps=float(np.mean(cam.bitrate_kbps)),
                              noise_sigma=float(np.mean(cam.noise_sigma)), crop_hw=cam.crop_hw)
    blur = float(np.mean(cam.blur_sigma))
    clip = cam.clip if cam.clip is not None else default_clip()
    classifier = EmotionModel.load(args.emotion_model, threads=args.threads)
    emotion: list[dict[str, Any]] = []
    for size in args.sizes:
        crops = simulate_fixed(np.stack(faces), size, settings, clip, cfg.seed + 2000, blur)
        restored = {"bilinear": bilinear(crops)}
        for name, (fn, _) in models.items():
            up = fn(fit_for_sr(crops, sr_input_px(dict(args.model)[name])))
            restored[name] = np.stack([cv2.resize(u, (48, 48), interpolation=cv2.INTER_AREA)
                                       for u in up])
        for name, images in restored.items():
            pred = classifier.predict(list(images)).probabilities.argmax(1)
            emotion.append({"size_px": size, "method": name,
                            "accuracy": float((pred == labels).mean()), "n": len(labels)})
    out = {"config": str(args.config), "camera": json.loads(cam.model_dump_json()),
           "emotion_camera": {"bitrate_kbps": settings.bitrate_kbps,
                              "noise_sigma": settings.noise_sigma, "blur_sigma_lr_px": blur},
           "models": {name: info for name, (_, info) in models.items()},
           "emotion_model": str(args.emotion_model), "fidelity": fidelity, "emotion": emotion,
           "wall_s": time.time() - t0,
           "command": command_line("python -m engines.eval.sr_camera", argv)}
    write_json(args.json, out)
    print_table(fidelity, [("hr", "hr_px", 3, "d"), ("lr", "lr_px", 3, "d"),
                           ("method", "method", 10, ""), ("PSNR dB", "psnr_db", 8, ".2f"),
                           ("MAE", "mae", 6, ".2f"), ("n", "n", 5, "d")])
    print_table(emotion, [("size", "size_px", 4, "d"), ("method", "method", 10, ""),
                          ("accuracy", "accuracy", 8, ".4f"), ("n", "n", 5, "d")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
