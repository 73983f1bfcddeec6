"""Validated training configuration for the emotion classifier (unknown keys rejected)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import ConfigError

Prob = Annotated[float, Field(ge=0.0, le=1.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    root: Path | None = Field(
        default=None, description="folder holding the splits; default $CCTV_SHARED/data/ferplus "
        "or ../shared/data/ferplus relative to the repository root")
    train_dir: str = "FER2013Train"
    val_dir: str = "FER2013Valid"
    layout: Literal["auto", "ferplus", "folder"] = "auto"
    cache_dir: Path | None = Path("runs/cache")
    max_train_samples: Annotated[int, Field(ge=1)] | None = None
    max_val_samples: Annotated[int, Field(ge=1)] | None = None


class ModelConfig(_Strict):
    input_size: Annotated[int, Field(ge=32, le=128)] = 48
    color: Literal["gray", "rgb", "bgr"] = "gray"
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.25,)
    stem_width: Annotated[int, Field(ge=8)] = 32
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (1, 1, 1, 1)
    stem_stride: Literal[1, 2] = 1
    first_stage_stride: Literal[1, 2] = 2
    dropout: Prob = 0.2

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        ch = 1 if self.color == "gray" else 3
        if len(self.mean) != ch or len(self.std) != ch:
            raise ValueError(f"mean/std: expected {ch} values for color {self.color!r}, got "
                             f"{len(self.mean)} and {len(self.std)}")
        if len(self.widths) != len(self.blocks):
            raise ValueError(f"widths/blocks: expected equal lengths, got {len(self.widths)} "
                             f"and {len(self.blocks)}")
        return self


class DegradeConfig(_Strict):
    prob: Prob = 0.5
    min_size_px: Annotated[int, Field(ge=4)] = 10
    max_size_px: Annotated[int, Field(ge=4)] = 48
    blur_prob: Prob = 0.3
    noise_prob: Prob = 0.3
    jpeg_prob: Prob = 0.3
    restore_methods: tuple[Literal["bilinear", "bicubic", "nearest"], ...] = (
        "bilinear", "bicubic")


class CameraRangesConfig(_Strict):
    """The cameras the simulator (:mod:`engines.cctv_sim`) draws from: one per chunk of faces.
    Shared by emotion training (``augment.camera``) and SR training (``data.camera``)."""

    enabled: bool = False
    clip: Path | None = Field(
        default=None, description="background clip; default $CCTV_SHARED/data/cctv/"
        "town_centre_1080p25.mp4")
    min_size_px: Annotated[int, Field(ge=4)] = 10
    max_size_px: Annotated[int, Field(ge=4, le=64)] = 48
    bitrate_kbps: tuple[float, float] = (300.0, 4000.0)
    blur_sigma: tuple[float, float] = (0.0, 1.2)
    noise_sigma: tuple[float, float] = (0.5, 6.0)
    hevc_prob: Prob = 0.2
    jpeg_prob: Prob = 0.1
    crop_hw: tuple[int, int] | None = (540, 960)
    workers: Annotated[int, Field(ge=1, le=64)] = 2


class CameraSimConfig(CameraRangesConfig):
    """Faces through the camera simulator, made once and cached (emotion training)."""

    variants: Annotated[int, Field(ge=1, le=8)] = 2
    prob: Prob = Field(default=0.5, description="share of face samples drawn from simulated "
                       "variants instead of the clean image")
    restore_methods: tuple[Literal["bilinear", "bicubic"], ...] = ("bilinear", "bicubic")


class NonFaceConfig(_Strict):
    """A ``not_face`` output trained on crops mined from real clips (engines/train/nonface)."""

    enabled: bool = False
    class_name: str = "not_face"
    fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.1, description="share of each epoch's samples that are non-face crops")
    clips: tuple[Path, ...] = Field(
        default=(), description="clips to mine; default the two CCTV clips in $CCTV_SHARED")
    train_frame_frac: Prob = Field(
        default=0.67, description="mine the first part of each clip; the rest is held out")
    yunet_model: Path | None = Field(
        default=None, description="YuNet ONNX used to keep real faces out of the crops; "
        "default $CCTV_SHARED/data/models/face_detection_yunet_2026may.onnx")
    per_frame_random: Annotated[int, Field(ge=0)] = 60
    per_frame_near: Annotated[int, Field(ge=0)] = 6


class AugmentConfig(_Strict):
    hflip: bool = True
    rotate_deg: Annotated[float, Field(ge=0)] = 12.0
    scale_range: tuple[float, float] = (0.9, 1.1)
    shift_frac: Annotated[float, Field(ge=0, le=0.5)] = 0.08
    brightness: Annotated[float, Field(ge=0, le=1)] = 0.1
    contrast: Annotated[float, Field(ge=0, le=1)] = 0.2
    erase_prob: Prob = 0.25
    mixup_prob: Prob = Field(default=0.0, description="share of batches mixed (mixup)")
    mixup_alpha: Annotated[float, Field(gt=0)] = 0.4
    degrade: DegradeConfig = DegradeConfig()
    camera: CameraSimConfig = CameraSimConfig()


class OptimConfig(_Strict):
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: Annotated[float, Field(gt=0)] = 2e-3
    weight_decay: Annotated[float, Field(ge=0)] = 0.05
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    epochs: Annotated[int, Field(ge=1)] = 16
    batch_size: Annotated[int, Field(ge=1)] = 128
    warmup_epochs: Annotated[float, Field(ge=0)] = 1.0
    final_lr_frac: Annotated[float, Field(ge=0, le=1)] = 0.01
    target: Literal["soft", "majority"] = "soft"
    label_smoothing: Prob = 0.0
    max_steps_per_epoch: Annotated[int, Field(ge=1)] | None = None
    ema_decay: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        default=0.0, description="EMA of the weights (0 = off); evaluated and exported")


class CctvEvalPoint(_Strict):
    size_px: Annotated[int, Field(ge=4)] = 16
    bitrate_kbps: Annotated[float, Field(gt=0)] = 1000.0


class EvalConfig(_Strict):
    sizes: tuple[int, ...] = (48, 16)
    cctv: tuple[CctvEvalPoint, ...] = Field(
        default=(), description="also score faces through the camera simulator (H.264, the "
        "camera.clip) at these sizes and bitrates; counted in the model-selection mean")
    restore: Literal["bilinear", "bicubic", "nearest"] = "bilinear"
    batch_size: Annotated[int, Field(ge=1)] = 256


class TrainConfig(_Strict):
    name: str = "emotion_resnet"
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: Annotated[int, Field(ge=1, le=64)] = 2
    out_dir: Path = Path("runs/emotion")
    log_every: Annotated[int, Field(ge=1)] = 20
    init_from: Path | None = Field(
        default=None, description="checkpoint whose model weights start this run (fine-tuning "
        "a second schedule); optimiser state is not taken")
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    augment: AugmentConfig = AugmentConfig()
    nonface: NonFaceConfig = NonFaceConfig()
    optim: OptimConfig = OptimConfig()
    eval: EvalConfig = EvalConfig()


def load_train_config(path: Path) -> TrainConfig:
    """Read YAML and validate; errors name the bad field."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read YAML: {err}") from err
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{path}: {loc}: {first['msg']}") from err
