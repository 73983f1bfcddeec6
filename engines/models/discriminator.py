"""Multi-scale patch discriminator for the SR GAN (LSGAN targets: real 1, fake 0).

Each scale is a small PatchGAN (stride-2 convolutions with LeakyReLU(0.2), spectral norm for
stable training on small batches) returning a map of per-patch realness scores; scale ``k``
sees the image average-pooled ``2**k`` times, so the coarse heads judge face structure and
the fine head judges texture. ``forward`` returns one score map per scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


@dataclass(frozen=True)
class DiscriminatorConfig:
    in_channels: int = 1
    base_width: int = 32
    max_width: int = 128
    layers: int = 3
    scales: int = 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class PatchHead(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        ch_in, ch = cfg.in_channels, cfg.base_width
        for _ in range(cfg.layers):
            mods += [spectral_norm(nn.Conv2d(ch_in, ch, 4, 2, 1)), nn.LeakyReLU(0.2)]
            ch_in, ch = ch, min(ch * 2, cfg.max_width)
        mods += [spectral_norm(nn.Conv2d(ch_in, ch_in, 3, 1, 1)), nn.LeakyReLU(0.2),
                 nn.Conv2d(ch_in, 1, 3, 1, 1)]
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MultiScaleDiscriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig) -> None:
        super().__init__()
        if cfg.scales < 1 or cfg.layers < 1:
            raise ValueError(f"DiscriminatorConfig: expected scales >= 1 and layers >= 1, got "
                             f"{cfg.scales} and {cfg.layers}")
        self.cfg = cfg
        self.heads = nn.ModuleList(PatchHead(cfg) for _ in range(cfg.scales))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, head in enumerate(self.heads):
            if i > 0:
                x = F.avg_pool2d(x, 2)
            outs.append(head(x))
        return outs
