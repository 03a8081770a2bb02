"""Embedding networks, by name. Every backbone maps float32 [N, C, H, W] -> [N, D] and exports to ONNX."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def conv_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class Conv4(nn.Module):
    """Snell et al.'s embedding: 4 x [conv3x3, BatchNorm, ReLU, maxpool 2], flattened.

    28x28 input -> 64 x 1 x 1 -> 64-d embedding.
    """

    def __init__(self, in_channels: int = 1, hidden: int = 64, out_channels: int = 64) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            conv_block(in_channels, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, hidden),
            conv_block(hidden, out_channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).flatten(1)


class ResBlock(nn.Module):
    """ResNet-12 block: 3 x conv3x3 + BN (LeakyReLU), 1x1 shortcut, maxpool 2."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [
                nn.Conv2d(in_channels if i == 0 else out_channels, out_channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(out_channels),
            ]
            if i < 2:
                layers.append(nn.LeakyReLU(0.1, inplace=True))
        self.body = nn.Sequential(*layers)
        self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))
        self.out = nn.Sequential(nn.LeakyReLU(0.1, inplace=True), nn.MaxPool2d(2, ceil_mode=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x) + self.shortcut(x))


class ResNet12(nn.Module):
    """ResNet-12 (Oreshkin et al.): 4 residual blocks, global average pool -> widths[-1]-d.

    The default widths are narrow so that the fp32 file stays near the 2 MB edge budget; the
    literature's (64, 160, 320, 640) is ``widths=[64, 160, 320, 640]``.
    """

    def __init__(self, in_channels: int = 1, widths: tuple[int, ...] | list[int] = (32, 48, 64, 96)) -> None:
        super().__init__()
        blocks, prev = [], in_channels
        for w in widths:
            blocks.append(ResBlock(prev, int(w)))
            prev = int(w)
        self.encoder = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x).mean(dim=(2, 3))


class MobileNetV3Small(nn.Module):
    """torchvision's MobileNetV3-Small features (random init), global average pool -> 576-d.

    For RGB (or grayscale) images at 64x64 and up; the stem is rebuilt for ``in_channels``.
    """

    def __init__(self, in_channels: int = 3, width_mult: float = 1.0) -> None:
        super().__init__()
        from torchvision.models import mobilenet_v3_small

        net = mobilenet_v3_small(weights=None, width_mult=width_mult)
        stem = net.features[0][0]
        if in_channels != stem.in_channels:
            net.features[0][0] = nn.Conv2d(
                in_channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False
            )
        self.features = net.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x).mean(dim=(2, 3))


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "conv4": Conv4,
    "resnet12": ResNet12,
    "mobilenet_v3_small": MobileNetV3Small,
}


def build_backbone(name: str, in_channels: int, **kwargs) -> nn.Module:
    """A fresh backbone by registry name."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; one of {sorted(BACKBONES)}")
    return BACKBONES[name](in_channels=in_channels, **kwargs)


def embedding_dim(model: nn.Module, in_channels: int, size: tuple[int, int]) -> int:
    """D of ``model`` for [N, in_channels, *size] inputs (one dry run on the CPU)."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        dim = model(torch.zeros(2, in_channels, *size, device=next(model.parameters()).device)).shape[1]
    model.train(was_training)
    return int(dim)
