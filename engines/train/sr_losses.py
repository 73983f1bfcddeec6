"""Losses for the SR GAN: L1, LSGAN, and perceptual L1 on a fixed feature network.

The feature network is frozen and in eval mode. Two are available:

- ``emotion_resnet`` (default): the project's own FER+ ResNet (``engines/weights/
  emotion_resnet.pt`` + ``.json``), available offline and tuned to faces; features are the
  stem and the first three stage outputs;
- ``vgg19``: the paper's choice, the project's VGG-19 stack loaded from a torchvision-format
  state dict given by path (none can be downloaded here).

All feature networks take images in [0, 1] (N, C, H, W); gray and RGB are converted as needed.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from engines.models.resnet import build_resnet
from engines.models.vgg import VGG19Features

_LUMA = (0.299, 0.587, 0.114)


def _to_gray(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x
    w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(dim=1, keepdim=True)


class EmotionResNetFeatures(nn.Module):
    """Intermediate activations of the emotion ResNet (stem, stages 1-3) for [0, 1] images."""

    def __init__(self, manifest_path: Path, n_stages: int = 3) -> None:
        super().__init__()
        manifest_path = Path(manifest_path)
        try:
            meta = json.loads(manifest_path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise FileNotFoundError(f"{manifest_path}: cannot read the emotion manifest for the "
                                    f"perceptual loss: {err}") from err
        weights = manifest_path.parent / str(meta.get("weights_file") or "")
        if not meta.get("architecture") or not weights.is_file():
            raise FileNotFoundError(f"{manifest_path}: expected architecture and a weights_file "
                                    f"(state dict) for the perceptual loss, got {weights}")
        net = build_resnet(meta["architecture"])
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        self.color = meta["color"]
        self.stem = net.stem
        self.stages = net.stages[:n_stages]
        self.register_buffer("mean", torch.tensor(meta["mean"]).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(meta["std"]).view(1, -1, 1, 1))
        self.weights_path = weights
        self.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> EmotionResNetFeatures:
        return super().train(False)  # BatchNorm statistics stay frozen

    def forward(self, x_unit: torch.Tensor) -> list[torch.Tensor]:
        x = _to_gray(x_unit) if self.color == "gray" else (
            x_unit.repeat(1, 3, 1, 1) if x_unit.shape[1] == 1 else x_unit)
        h = self.stem((x - self.mean) / self.std)
        outs = [h]
        for stage in self.stages:
            h = stage(h)
            outs.append(h)
        return outs


def build_feature_net(kind: str, emotion_manifest: Path, vgg19_weights: Path | None,
                      emotion_stages: int = 2) -> nn.Module:
    if kind == "emotion_resnet":
        return EmotionResNetFeatures(emotion_manifest, emotion_stages)
    if kind == "vgg19":
        if vgg19_weights is None:
            raise ValueError("feature_net vgg19: expected a weights path, got none")
        net = VGG19Features()
        net.load_torchvision_state(Path(vgg19_weights))
        return net.eval().requires_grad_(False)
    raise ValueError(f"feature_net: expected emotion_resnet|vgg19, got {kind!r}")


def perceptual_l1(features: nn.Module, fake_unit: torch.Tensor, real_unit: torch.Tensor
                  ) -> torch.Tensor:
    """Mean over layers of the L1 distance between feature maps."""
    with torch.no_grad():
        real = features(real_unit)
    fake = features(fake_unit)
    losses = [F.l1_loss(f, r) for f, r in zip(fake, real, strict=True)]
    return torch.stack(losses).mean()


def lsgan_d_loss(real_scores: list[torch.Tensor], fake_scores: list[torch.Tensor]
                 ) -> torch.Tensor:
    """Least-squares discriminator loss: real -> 1, fake -> 0, averaged over scales."""
    terms = [((r - 1) ** 2).mean() + (f ** 2).mean()
             for r, f in zip(real_scores, fake_scores, strict=True)]
    return 0.5 * torch.stack(terms).mean()


def lsgan_g_loss(fake_scores: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([((f - 1) ** 2).mean() for f in fake_scores]).mean()
