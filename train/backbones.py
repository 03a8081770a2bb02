"""Embedding networks, by name. Every backbone maps float32 [N, C, H, W] -> [N, D] and exports to ONNX."""

from __future__ import annotations

from typing import Callable

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


BACKBONES: dict[str, Callable[..., nn.Module]] = {
    "conv4": Conv4,
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
