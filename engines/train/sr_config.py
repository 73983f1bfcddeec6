"""Validated configuration for self-supervised face SR training (unknown keys rejected)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from engines.train.config import CameraRangesConfig
from pipeline.errors import ConfigError

Prob = Annotated[float, Field(ge=0.0, le=1.0)]
AUGMENTATIONS = ("rot90", "rot180", "rot270", "noise", "blur", "jpeg")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HarvestConfig(_Strict):
    """How ``--footage`` turns recorded video into training faces (pipeline detector + tracker)."""

    detector: Literal["mtcnn", "yunet", "scrfd"] = "mtcnn"
    detector_model: Path | None = Field(default=None, description="required for yunet / scrfd")
    score_threshold: Annotated[float, Field(ge=0, le=1)] = 0.6
    min_face_px: Annotated[float, Field(ge=4)] = 12.0
    analysis_fps: Annotated[float, Field(gt=0)] | None = 5.0
    interval_s: Annotated[float, Field(gt=0)] = 1.0
    min_quality: Annotated[float, Field(ge=0, le=1)] = Field(
        default=0.3, description="pipeline face-quality gate (size, sharpness, frontal); "
        "drops most false detections")
    crops_per_track: Annotated[int, Field(ge=1)] = 3
    max_crop_px: Annotated[int, Field(ge=16, le=512)] = 128
    dedup_threshold: Annotated[float, Field(ge=0)] = 4.0
    max_frames: Annotated[int, Field(ge=1)] | None = None


class SrCameraConfig(CameraRangesConfig):
    """Camera-domain pairs (:mod:`engines.train.sr_camera`): FER+ faces through the camera
    simulator at ``min_size_px``-``max_size_px`` are the ground truth, and the ground truth
    through the simulator again at 1/scale the size is the input."""

    min_size_px: Annotated[int, Field(ge=8)] = 40
    max_size_px: Annotated[int, Field(ge=8, le=64)] = 48


class SrDataConfig(_Strict):
    root: Path | None = Field(
        default=None, description="FER+ folder; default $CCTV_SHARED/data/ferplus or "
        "../shared/data/ferplus relative to the repository root")
    ferplus_dirs: tuple[str, ...] = ("FER2013Train",)
    image_dirs: tuple[Path, ...] = Field(
        default=(), description="folders of face images of any size (searched recursively)")
    footage: tuple[Path, ...] = Field(
        default=(), description="video files or folders to harvest faces from (per camera)")
    harvest_dir: Path = Path("runs/sr/harvest")
    harvest: HarvestConfig = HarvestConfig()
    hr_sizes: tuple[int, ...] = Field(
        default=(48, 32), description="ground-truth sizes; an image joins a size only if it "
        "is at least that large (no upsampled ground truth)")
    max_images: Annotated[int, Field(ge=1)] | None = None
    val_dir: str | None = "FER2013Valid"
    val_images: Annotated[int, Field(ge=1)] = 256
    cache_dir: Path | None = Path("runs/cache")
    camera: SrCameraConfig = SrCameraConfig()


class PairConfig(_Strict):
    scale: Literal[2, 4, 8] = 4
    augmentations: tuple[Literal["rot90", "rot180", "rot270", "noise", "blur", "jpeg"], ...] = \
        AUGMENTATIONS
    noise_sigma: tuple[float, float] = (1.0, 6.0)
    blur_sigma: tuple[float, float] = (0.3, 0.9)
    jpeg_quality: tuple[int, int] = (40, 90)


class SrModelConfig(_Strict):
    color: Literal["gray", "rgb"] = "gray"
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    base_width: Annotated[int, Field(ge=4)] = 32
    encoder_widths: tuple[int, ...] = (48,)
    bottleneck_blocks: Annotated[int, Field(ge=0)] = 3
    up_widths: tuple[int, ...] = (32, 16)
    norm: Literal["none", "instance"] = "none"
    upsample: Literal["nearest", "pixelshuffle"] = "nearest"
    global_skip: bool = True
    d_base_width: Annotated[int, Field(ge=4)] = 32
    d_layers: Annotated[int, Field(ge=1)] = 3
    d_scales: Annotated[int, Field(ge=1)] = 2

    @model_validator(mode="after")
    def _check(self) -> SrModelConfig:
        ch = 1 if self.color == "gray" else 3
        if len(self.mean) != ch or len(self.std) != ch:
            raise ValueError(f"mean/std: expected {ch} values for color {self.color!r}, got "
                             f"{len(self.mean)} and {len(self.std)}")
        return self


class LossConfig(_Strict):
    l1: Annotated[float, Field(ge=0)] = 1.0
    perceptual: Annotated[float, Field(ge=0)] = 0.1
    adversarial: Annotated[float, Field(ge=0)] = 0.01
    adv_start_step: Annotated[int, Field(ge=0)] = 300
    feature_net: Literal["emotion_resnet", "vgg19"] = "emotion_resnet"
    feature_stages: Annotated[int, Field(ge=1, le=4)] = Field(
        default=2, description="emotion ResNet stages after the stem used as features (VGG-19 "
        "uses relu1_2..relu4_4); fewer stages = cheaper CPU steps")
    emotion_manifest: Path = Path("engines/weights/emotion_resnet.json")
    vgg19_weights: Path | None = Field(
        default=None, description="torchvision-format VGG-19 state dict (loaded weights_only)")

    @model_validator(mode="after")
    def _check(self) -> LossConfig:
        if self.feature_net == "vgg19" and self.vgg19_weights is None:
            raise ValueError("loss.vgg19_weights is required when loss.feature_net is 'vgg19'")
        return self


class SrOptimConfig(_Strict):
    steps: Annotated[int, Field(ge=1)] = 6000
    batch_size: Annotated[int, Field(ge=1)] = 32
    lr_g: Annotated[float, Field(gt=0)] = 2e-4
    lr_d: Annotated[float, Field(gt=0)] = 2e-4
    betas: tuple[float, float] = (0.5, 0.99)
    ema_decay: Annotated[float, Field(ge=0, lt=1)] = 0.999
    max_minutes: Annotated[float, Field(gt=0)] | None = Field(
        default=None, description="stop (and save) after this much training wall time")


class SrTrainConfig(_Strict):
    name: str = "sr_generator"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Field(ge=1, le=64)] = 2
    out_dir: Path = Path("runs/sr")
    log_every: Annotated[int, Field(ge=1)] = 25
    eval_every: Annotated[int, Field(ge=1)] = 500
    checkpoint_every: Annotated[int, Field(ge=1)] = 250
    data: SrDataConfig = SrDataConfig()
    pairs: PairConfig = PairConfig()
    model: SrModelConfig = SrModelConfig()
    loss: LossConfig = LossConfig()
    optim: SrOptimConfig = SrOptimConfig()

    @model_validator(mode="after")
    def _check_sizes(self) -> SrTrainConfig:
        mult = self.pairs.scale * 2 ** len(self.model.encoder_widths)
        bad = [s for s in self.data.hr_sizes if s % mult]
        if bad:
            raise ValueError(f"data.hr_sizes: expected multiples of {mult} (scale x encoder "
                             f"downsampling), got {bad}")
        return self


def load_sr_config(path: Path) -> SrTrainConfig:
    """Read YAML and validate; errors name the bad field."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read YAML: {err}") from err
    try:
        return SrTrainConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {loc}: {first['msg']}") from err
