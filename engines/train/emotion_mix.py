"""What one emotion training sample is made of: clean faces, camera-simulated faces, non-faces.

The training set is FER+ faces plus, when configured, ``variants`` copies of every face through
the camera simulator (:mod:`engines.cctv_sim`, random camera per chunk, cached) and non-face
crops mined from real clips (:mod:`engines.train.nonface`) labelled with one extra class.
Each epoch draws every face once (as its clean image with probability ``1 - camera.prob``,
otherwise as one of its simulated variants) and adds ``fraction`` non-face crops.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engines.cctv_sim import SimRanges, SimulatedSet, simulate_dataset
from engines.train.config import CameraRangesConfig, CameraSimConfig, NonFaceConfig, TrainConfig
from engines.train.degradations import restore
from engines.train.ferplus import FaceDataset, default_shared_dir

log = logging.getLogger(__name__)
DEFAULT_CLIP = "data/cctv/town_centre_1080p25.mp4"
DEFAULT_NONFACE_CLIPS = ("data/cctv/town_centre_1080p25.mp4",
                         "data/cctv/pets2009_campus_480x360.mp4")
DEFAULT_YUNET = "data/models/face_detection_yunet_2026may.onnx"


def default_clip() -> Path:
    """The simulator's background clip when none is configured: the 1080p Town Centre clip."""
    return default_shared_dir() / DEFAULT_CLIP


def camera_clip(cfg: CameraRangesConfig) -> Path:
    return cfg.clip if cfg.clip is not None else default_clip()


def sim_ranges(cfg: CameraRangesConfig) -> SimRanges:
    return SimRanges(min_size_px=cfg.min_size_px, max_size_px=cfg.max_size_px,
                     blur_sigma=cfg.blur_sigma, noise_sigma=cfg.noise_sigma,
                     bitrate_kbps=cfg.bitrate_kbps, hevc_prob=cfg.hevc_prob,
                     jpeg_prob=cfg.jpeg_prob, crop_hw=cfg.crop_hw)


@dataclass(frozen=True)
class TrainingMix:
    faces: FaceDataset
    simulated: tuple[SimulatedSet, ...]  # one per variant, aligned with faces
    nonfaces: np.ndarray  # (M, H, W) uint8
    class_names: tuple[str, ...]  # face classes, then the non-face class when present
    camera: CameraSimConfig
    nonface_fraction: float

    @property
    def nonface_index(self) -> int | None:
        return len(self.faces.class_names) if len(self.class_names) > len(
            self.faces.class_names) else None


def build_mix(cfg: TrainConfig, faces: FaceDataset) -> TrainingMix:
    cam = cfg.augment.camera
    simulated: list[SimulatedSet] = []
    if cam.enabled:
        clip = camera_clip(cam)
        for v in range(cam.variants):
            simulated.append(simulate_dataset(faces.images, sim_ranges(cam), clip,
                                              seed=cfg.seed * 100 + v, workers=cam.workers,
                                              cache_dir=cfg.data.cache_dir))
            log.info("camera variant %d: %d faces from %s", v, len(simulated[-1]), clip)
    names = tuple(faces.class_names)
    nonfaces = np.zeros((0, *faces.images.shape[1:]), np.uint8)
    nf = cfg.nonface
    if nf.enabled:
        nonfaces = mine_training_nonfaces(nf, cfg.seed, cfg.data.cache_dir,
                                          int(faces.images.shape[1]))
        names = (*names, nf.class_name)
        log.info("non-face crops: %d", len(nonfaces))
    return TrainingMix(faces, tuple(simulated), nonfaces, names, cam, nf.fraction)


def nonface_sources(nf: NonFaceConfig, held_out: bool) -> list:
    """Frame ranges of each clip: the first ``train_frame_frac`` for training, else the rest."""
    import av

    from engines.train.nonface import NonFaceSource

    clips = nf.clips or tuple(default_shared_dir() / c for c in DEFAULT_NONFACE_CLIPS)
    out = []
    for clip in clips:
        with av.open(str(clip)) as c:
            n = c.streams.video[0].frames or sum(1 for _ in c.decode(video=0))
        split = int(n * nf.train_frame_frac)
        step = max(1, (n - split) // 24) if held_out else max(1, split // 48)
        out.append(NonFaceSource(Path(clip), split if held_out else 0, n if held_out else split,
                                 step))
    return out


def mine_training_nonfaces(nf: NonFaceConfig, seed: int, cache_dir: Path | None,
                           out_px: int) -> np.ndarray:
    from engines.train.nonface import mine_nonfaces

    model = nf.yunet_model or default_shared_dir() / DEFAULT_YUNET
    crops = mine_nonfaces(nonface_sources(nf, held_out=False), model, nf.per_frame_random,
                          nf.per_frame_near, seed, out_px, cache_dir)
    return np.concatenate([crops["detector"], crops["near"], crops["random"]])


def epoch_samples(mix: TrainingMix, rng: np.random.Generator) -> np.ndarray:
    """Sample ids for one epoch, shuffled: faces ``0..N-1``, non-faces ``N..N+M-1``."""
    n = len(mix.faces)
    ids = [np.arange(n)]
    m = len(mix.nonfaces)
    if m and mix.nonface_fraction > 0:
        k = round(n * mix.nonface_fraction / (1 - mix.nonface_fraction))
        ids.append(n + rng.integers(0, m, size=k))
    return rng.permutation(np.concatenate(ids))


def sample_images(mix: TrainingMix, ids: np.ndarray, rng: np.random.Generator
                  ) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Images (before augmentation), soft targets ``(B, C)``, and whether each is simulated."""
    n = len(mix.faces)
    hw = tuple(mix.faces.images.shape[1:3])
    c = len(mix.class_names)
    images, targets, simulated = [], np.zeros((len(ids), c), np.float32), np.zeros(len(ids), bool)
    for j, i in enumerate(ids):
        if i >= n:
            images.append(mix.nonfaces[i - n])
            targets[j, mix.nonface_index] = 1.0
            continue
        targets[j, :len(mix.faces.class_names)] = mix.faces.soft_targets[i]
        if mix.simulated and rng.random() < mix.camera.prob:
            sim = mix.simulated[int(rng.integers(len(mix.simulated)))]
            method = mix.camera.restore_methods[int(rng.integers(len(
                mix.camera.restore_methods)))]
            images.append(restore(sim.crop(int(i)), hw, method))
            simulated[j] = True
        else:
            images.append(mix.faces.images[i])
    return images, targets, simulated
