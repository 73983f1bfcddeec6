"""A small ResNet family for face crops (48-128 px, grayscale or RGB).

Written in the project because torchvision is not available on the target machines. The
architecture is fully described by :class:`ResNetConfig`, a plain dict of which is stored in
the model manifest so the torch runtime backend can rebuild the network without pickled code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class ResNetConfig:
    """Shape of the network. ``widths``/``blocks`` give one entry per stage.

    ``stem_stride`` 1 keeps full resolution in the stem (for 48 px inputs); the first stage
    then downsamples by ``first_stage_stride``. Every later stage halves the resolution.
    ``tta_hflip`` makes the eval-mode forward average the logits of the face and its mirror
    image (twice the compute; training is unchanged). It is part of the architecture so the
    ONNX graph and the torch backend compute the same thing.
    """

    in_channels: int = 1
    num_classes: int = 8
    stem_width: int = 32
    widths: tuple[int, ...] = (32, 64, 128, 256)
    blocks: tuple[int, ...] = (2, 2, 2, 2)
    stem_stride: int = 1
    first_stage_stride: int = 2
    dropout: float = 0.2
    tta_hflip: bool = False
    kind: str = field(default="resnet_basic")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["widths"] = list(self.widths)
        data["blocks"] = list(self.blocks)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ResNetConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"ResNetConfig: unknown keys {unknown}")
        if "widths" in known:
            known["widths"] = tuple(int(w) for w in known["widths"])
        if "blocks" in known:
            known["blocks"] = tuple(int(b) for b in known["blocks"])
        cfg = cls(**known)
        if len(cfg.widths) != len(cfg.blocks):
            raise ValueError(f"ResNetConfig: expected as many widths as blocks, got "
                             f"{len(cfg.widths)} widths and {len(cfg.blocks)} blocks")
        if cfg.kind != "resnet_basic":
            raise ValueError(f"ResNetConfig.kind: expected 'resnet_basic', got {cfg.kind!r}")
        return cfg


class BasicBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        # Zero-init the last BN so every block starts as identity: trains faster from scratch.
        nn.init.zeros_(self.bn2.weight)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


class ResNet(nn.Module):
    """Basic-block ResNet returning class logits (softmax and temperature are applied outside)."""

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, cfg.stem_width, 3, cfg.stem_stride, 1, bias=False),
            nn.BatchNorm2d(cfg.stem_width),
            nn.ReLU(inplace=True),
        )
        stages = []
        in_ch = cfg.stem_width
        for i, (width, n_blocks) in enumerate(zip(cfg.widths, cfg.blocks, strict=True)):
            stride = cfg.first_stage_stride if i == 0 else 2
            layers = []
            for j in range(n_blocks):
                layers.append(BasicBlock(in_ch, width, stride if j == 0 else 1))
                in_ch = width
            stages.append(nn.Sequential(*layers))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(in_ch, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.tta_hflip and not self.training:
            n = x.shape[0]
            logits = self._logits(torch.cat([x, torch.flip(x, dims=[3])]))
            return (logits[:n] + logits[n:]) * 0.5
        return self._logits(x)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = torch.flatten(self.pool(x), 1)
        return self.fc(self.dropout(x))


def build_resnet(arch: dict[str, Any] | ResNetConfig) -> ResNet:
    """Build from a config or from the ``architecture`` dict stored in a manifest."""
    cfg = arch if isinstance(arch, ResNetConfig) else ResNetConfig.from_dict(arch)
    return ResNet(cfg)
