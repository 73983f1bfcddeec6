"""VGG-19 convolutional feature stack, written in the project (no torchvision here).

Module indices and parameter names match torchvision's ``vgg19().features`` (``features.0.weight``
... ``features.34.bias``), so a torchvision-format state dict loads with
``torch.load(path, weights_only=True)`` and no code from the file runs. Only the feature
layers are built; classifier keys in the file are ignored. Nothing is downloaded: the weights
path comes from the SR training config.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# torchvision "E" configuration: numbers are conv widths, "M" is a 2x2 max pool
VGG19_LAYOUT: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                                       512, 512, 512, 512, "M", 512, 512, 512, 512, "M")
# ReLU outputs used for the perceptual loss (relu1_2, relu2_2, relu3_4, relu4_4, relu5_4)
VGG19_RELU_INDICES: dict[str, int] = {"relu1_2": 3, "relu2_2": 8, "relu3_4": 17,
                                      "relu4_4": 26, "relu5_4": 35}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _features() -> nn.Sequential:
    layers: list[nn.Module] = []
    ch = 3
    for v in VGG19_LAYOUT:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(ch, int(v), 3, padding=1), nn.ReLU(inplace=False)]
            ch = int(v)
    return nn.Sequential(*layers)


class VGG19Features(nn.Module):
    """Returns the chosen ReLU activations of an RGB [0, 1] batch (gray is repeated to RGB)."""

    def __init__(self, layers: tuple[str, ...] = ("relu1_2", "relu2_2", "relu3_4", "relu4_4"),
                 ) -> None:
        super().__init__()
        unknown = [name for name in layers if name not in VGG19_RELU_INDICES]
        if unknown:
            raise ValueError(f"VGG19Features: expected layers among {list(VGG19_RELU_INDICES)}, "
                             f"got {unknown}")
        self.layers = tuple(layers)
        last = max(VGG19_RELU_INDICES[name] for name in layers)
        self.features = _features()[:last + 1]
        self._taps = {VGG19_RELU_INDICES[name]: name for name in layers}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def load_torchvision_state(self, path: Path) -> None:
        """Load ``features.*`` tensors from a torchvision VGG-19 state dict file."""
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise ValueError(f"{path}: expected a state dict, got {type(state).__name__}")
        ours = self.features.state_dict()
        picked = {}
        for key in ours:
            src = f"features.{key}"
            if src not in state:
                raise ValueError(f"{path}: expected key {src!r} of a torchvision VGG-19, "
                                 f"got none (keys start {sorted(state)[:4]})")
            if tuple(state[src].shape) != tuple(ours[key].shape):
                raise ValueError(f"{path}: {src}: expected shape {tuple(ours[key].shape)}, "
                                 f"got {tuple(state[src].shape)}")
            picked[key] = state[src]
        self.features.load_state_dict(picked)

    def forward(self, x_unit: torch.Tensor) -> list[torch.Tensor]:
        if x_unit.shape[1] == 1:
            x_unit = x_unit.repeat(1, 3, 1, 1)
        h = (x_unit - self.mean) / self.std
        outs = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in self._taps:
                outs.append(h)
        return outs
