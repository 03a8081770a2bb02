"""Batched on-device augmentation for ink-bright images (background 0).

Random affine (rotation, scale, shear, translation) through one ``affine_grid`` +
``grid_sample`` per batch, and stroke-width change (dilate / erode with a 3x3 max-pool).
Both act on the 0..1 image before normalization, per image, independently.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """rotate: max degrees; scale: max relative change; shear: max shear factor;
    translate: max shift as a fraction of the size; dilate/erode: probabilities per image."""

    rotate: float = 10.0
    scale: float = 0.15
    shear: float = 0.15
    translate: float = 0.1
    dilate: float = 0.4
    erode: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "none": None,
    "affine": AugmentConfig(dilate=0.0),
    "stroke": AugmentConfig(rotate=0.0, scale=0.0, shear=0.0, translate=0.0),
    "full": AugmentConfig(),
}


def _uniform(n: int, bound: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return (torch.rand(n, generator=g, device=device) * 2.0 - 1.0) * bound


def affine_thetas(n: int, cfg: AugmentConfig, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """float32 [n, 2, 3] random affine matrices in ``affine_grid``'s normalized coordinates."""
    angle = _uniform(n, math.radians(cfg.rotate), g, device)
    scale = 1.0 + _uniform(n, cfg.scale, g, device)
    shear = _uniform(n, cfg.shear, g, device)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.zeros(n, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin + shear * cos
    theta[:, 1, 0], theta[:, 1, 1] = sin, cos + shear * sin
    theta[:, :, 2] = _uniform(2 * n, 2.0 * cfg.translate, g, device).view(n, 2)
    return theta


def augment(x: torch.Tensor, cfg: AugmentConfig | None, g: torch.Generator) -> torch.Tensor:
    """x float [B, C, H, W] in 0..1, ink bright -> augmented, same shape and dtype."""
    if cfg is None:
        return x
    n = x.shape[0]
    if cfg.rotate or cfg.scale or cfg.shear or cfg.translate:
        theta = affine_thetas(n, cfg, g, x.device).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if cfg.dilate or cfg.erode:
        u = torch.rand(n, 1, 1, 1, generator=g, device=x.device)
        dilated = F.max_pool2d(x, 3, stride=1, padding=1)
        x = torch.where(u < cfg.dilate, dilated, x)
        if cfg.erode:
            eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
            x = torch.where(u > 1.0 - cfg.erode, eroded, x)
    return x
