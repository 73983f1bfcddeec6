"""StarGAN v2-style face super-resolution generator (Jo & Park's SR generator, CPU-sized).

Layout, as in the StarGAN v2 generator (Choi et al. 2020), minus the style code:

- ``from_lr``: a 3x3 convolution at the low-resolution input size;
- encoder: pre-activation residual blocks (optional instance norm -> LeakyReLU(0.2) ->
  conv 3x3, twice, with a learned 1x1 shortcut when widths differ, sum scaled by 1/sqrt(2)),
  each halving the resolution by average pooling;
- bottleneck: residual blocks at the lowest resolution;
- decoder: residual blocks that undo the encoder's downsampling (their output is added to
  the ``from_lr`` features, a long skip), then ``log2(scale)`` upsampling residual blocks
  (x2 each) to the output size; upsampling is nearest-neighbour then convolution as in
  StarGAN v2 (``upsample: nearest``, shipped) or a sub-pixel convolution
  (``upsample: pixelshuffle``: same cost here, but after GAN training it left a visible
  4-px checkerboard on smooth skin, see docs/RESULTS.md);
- ``to_hr``: LeakyReLU + 1x1 convolution to the image channels.

The network predicts a residual on top of a bicubic upscale of its input (global skip), so
it starts as bicubic and training only has to learn the missing detail; this is what lets a
few CPU hours of self-supervised training beat bicubic on realism without losing much PSNR.

StarGAN v2 normalises with instance norm (AdaIN in the decoder); ``norm: instance`` is
available, but the shipped model uses no normalisation (``norm: none``), as EDSR-style SR
networks do: normalisation discards the intensity statistics an SR network must keep, and
it costs CPU time at inference.

The architecture is fully described by :class:`GeneratorConfig`; its dict goes into the model
manifest. Scale is 2, 4 (default) or 8.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of the generator. ``widths`` has one entry per upsampling step (log2(scale))."""

    in_channels: int = 1
    scale: int = 4
    base_width: int = 32
    encoder_widths: tuple[int, ...] = (48,)
    bottleneck_blocks: int = 3
    up_widths: tuple[int, ...] = (32, 16)
    norm: str = "none"
    upsample: str = "nearest"
    global_skip: bool = True
    kind: str = field(default="stargan_v2_sr")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["encoder_widths"] = list(self.encoder_widths)
        data["up_widths"] = list(self.up_widths)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorConfig:
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"GeneratorConfig: unknown keys {unknown}")
        known = dict(data)
        for key in ("encoder_widths", "up_widths"):
            if key in known:
                known[key] = tuple(int(v) for v in known[key])
        cfg = cls(**known)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.scale not in (2, 4, 8):
            raise ValueError(f"GeneratorConfig.scale: expected 2, 4 or 8, got {self.scale}")
        steps = int(math.log2(self.scale))
        if len(self.up_widths) != steps:
            raise ValueError(f"GeneratorConfig.up_widths: expected {steps} widths for scale "
                             f"{self.scale}, got {list(self.up_widths)}")
        if self.in_channels not in (1, 3):
            raise ValueError(f"GeneratorConfig.in_channels: expected 1 or 3, got "
                             f"{self.in_channels}")
        if self.norm not in ("none", "instance"):
            raise ValueError(f"GeneratorConfig.norm: expected none|instance, got {self.norm!r}")
        if self.upsample not in ("nearest", "pixelshuffle"):
            raise ValueError(f"GeneratorConfig.upsample: expected nearest|pixelshuffle, got "
                             f"{self.upsample!r}")
        if self.kind != "stargan_v2_sr":
            raise ValueError(f"GeneratorConfig.kind: expected 'stargan_v2_sr', got {self.kind!r}")

    @property
    def min_input_multiple(self) -> int:
        """Input sides must be multiples of this (one factor 2 per encoder level)."""
        return 2 ** len(self.encoder_widths)


def _norm(kind: str, ch: int) -> nn.Module:
    return nn.InstanceNorm2d(ch, affine=True) if kind == "instance" else nn.Identity()


class ResBlk(nn.Module):
    """Pre-activation residual block; ``resample`` is none | down | up (x2)."""

    def __init__(self, in_ch: int, out_ch: int, norm: str = "none", resample: str = "none",
                 upsample: str = "nearest") -> None:
        super().__init__()
        self.resample = resample
        self.upsample = upsample
        self.norm1 = _norm(norm, in_ch)
        self.norm2 = _norm(norm, out_ch)
        self.act = nn.LeakyReLU(0.2)
        if resample == "up" and upsample == "pixelshuffle":
            # sub-pixel convolution: compute at low resolution, rearrange 4 channels into 2x2
            self.conv1 = nn.Sequential(nn.Conv2d(in_ch, out_ch * 4, 3, 1, 1), nn.PixelShuffle(2))
        else:
            self.conv1 = nn.Conv2d(in_ch, out_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1, 1, 0, bias=False) if in_ch != out_ch \
            else nn.Identity()

    def _up(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = self.shortcut(x)
        h = self.act(self.norm1(x))
        if self.resample == "up":
            short = self._up(short)
            if self.upsample == "nearest":
                h = self._up(h)
        h = self.conv1(h)
        if self.resample == "down":
            h = F.avg_pool2d(h, 2)
            short = F.avg_pool2d(short, 2)
        h = self.conv2(self.act(self.norm2(h)))
        return (h + short) * (1.0 / math.sqrt(2.0))


class Generator(nn.Module):
    """(N, C, h, w) normalised low-res faces -> (N, C, h*scale, w*scale)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.from_lr = nn.Conv2d(cfg.in_channels, cfg.base_width, 3, 1, 1)
        enc, dec = [], []
        ch = cfg.base_width
        for width in cfg.encoder_widths:
            enc.append(ResBlk(ch, width, cfg.norm, "down"))
            # mirrored decoder block, inserted first so the decoder runs in reverse order
            dec.insert(0, ResBlk(width, ch, cfg.norm, "up", cfg.upsample))
            ch = width
        self.encoder = nn.Sequential(*enc)
        self.bottleneck = nn.Sequential(*[ResBlk(ch, ch, cfg.norm)
                                          for _ in range(cfg.bottleneck_blocks)])
        self.decoder = nn.Sequential(*dec)
        ups = []
        ch = cfg.base_width
        for width in cfg.up_widths:
            ups.append(ResBlk(ch, width, cfg.norm, "up", cfg.upsample))
            ch = width
        self.upsampler = nn.Sequential(*ups)
        self.to_hr = nn.Sequential(nn.LeakyReLU(0.2), nn.Conv2d(ch, cfg.in_channels, 1, 1, 0))
        # start as (close to) the bicubic baseline: the residual head begins at zero
        nn.init.zeros_(self.to_hr[1].weight)
        nn.init.zeros_(self.to_hr[1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.from_lr(x)
        h = self.decoder(self.bottleneck(self.encoder(feat)))
        out = self.to_hr(self.upsampler(h + feat))
        if self.cfg.global_skip:
            out = out + F.interpolate(x, scale_factor=float(self.cfg.scale), mode="bicubic",
                                      align_corners=False)
        return out


def build_generator(arch: dict[str, Any] | GeneratorConfig) -> Generator:
    """Build from a config or from the ``architecture`` dict stored in a manifest."""
    cfg = arch if isinstance(arch, GeneratorConfig) else GeneratorConfig.from_dict(arch)
    return Generator(cfg)
