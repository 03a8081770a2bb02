"""Batched on-device augmentation, per image, independently, on the 0..1 image before normalization.

Random affine (rotation, scale, shear, translation) through one ``affine_grid`` +
``grid_sample`` per batch. Ink (grayscale, ink-bright, background 0): stroke-width change (dilate /
erode with a 3x3 max-pool), pixels moved in from outside are 0. Photos (``for_channels``: colour, or
grayscale photos): no stroke change (meaningless on photos) but brightness, contrast and, in colour,
a small saturation jitter; never a hue shift, since hue is what tells a red circle from a blue one.
Pixels moved in from outside take the data's mean colour, not black.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentConfig:
    """rotate: max degrees; scale: max relative change; shear: max shear factor;
    translate: max shift as a fraction of the size; dilate/erode: probabilities per image;
    brightness, contrast, saturation: max relative change (colour only)."""

    rotate: float = 10.0
    scale: float = 0.15
    shear: float = 0.15
    translate: float = 0.1
    dilate: float = 0.4
    erode: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


PRESETS = {
    "none": None,
    "affine": AugmentConfig(dilate=0.0),
    "stroke": AugmentConfig(rotate=0.0, scale=0.0, shear=0.0, translate=0.0),
    "full": AugmentConfig(),
}


COLOUR_JITTER = {"brightness": 0.2, "contrast": 0.2, "saturation": 0.1}


def for_channels(cfg: AugmentConfig | None, channels: int, photo: bool | None = None) -> AugmentConfig | None:
    """The preset as it applies to ``channels``: photos (``photo``; default: colour) trade stroke-width
    change for colour jitter (grayscale photos: brightness and contrast alone)."""
    if cfg is None or not (channels == 3 if photo is None else photo):
        return cfg
    jitter = COLOUR_JITTER if channels == 3 else {**COLOUR_JITTER, "saturation": 0.0}
    return replace(cfg, dilate=0.0, erode=0.0, **(jitter if cfg.dilate or cfg.erode else {}))


def colour_jitter(x: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> torch.Tensor:
    """x float [B, C, H, W] in 0..1 -> brightness, contrast and (C = 3) saturation changed per image,
    clamped to 0..1."""
    n = x.shape[0]
    u = _uniform(3 * n, 1.0, g, x.device).view(3, n, 1, 1, 1).to(x.dtype)
    b, c, s = 1.0 + u[0] * cfg.brightness, 1.0 + u[1] * cfg.contrast, 1.0 + u[2] * cfg.saturation
    x = x * b
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * c + mean
    if x.shape[1] != 3:
        return x.clamp(0.0, 1.0)
    gray = (0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).expand_as(x)
    return ((x - gray) * s + gray).clamp(0.0, 1.0)


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


def augment(
    x: torch.Tensor, cfg: AugmentConfig | None, g: torch.Generator, fill: torch.Tensor | None = None
) -> torch.Tensor:
    """x float [B, C, H, W] in 0..1 -> augmented, same shape and dtype. fill: float [1, C, 1, 1]
    in 0..1, what pixels moved in from outside become (None: 0, the ink-bright background)."""
    if cfg is None:
        return x
    n = x.shape[0]
    if cfg.rotate or cfg.scale or cfg.shear or cfg.translate:
        theta = affine_thetas(n, cfg, g, x.device).to(x.dtype)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        if fill is None:
            x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        else:  # sampling x - fill with zero padding pads with fill exactly
            x = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False) + fill
    if cfg.brightness or cfg.contrast or cfg.saturation:
        x = colour_jitter(x, cfg, g)
    if cfg.dilate or cfg.erode:
        u = torch.rand(n, 1, 1, 1, generator=g, device=x.device)
        dilated = F.max_pool2d(x, 3, stride=1, padding=1)
        x = torch.where(u < cfg.dilate, dilated, x)
        if cfg.erode:
            eroded = -F.max_pool2d(-x, 3, stride=1, padding=1)
            x = torch.where(u > 1.0 - cfg.erode, eroded, x)
    return x
