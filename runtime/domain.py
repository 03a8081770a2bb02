"""The domain check: does an input look like the images the model was trained on?

Export records, in the model's ``domain`` metadata, the range of a few cheap statistics of its
reference images as the runtime prepares them (uint8 [N, H, W, C], background dark after the
polarity fix): the fraction of dark (background) pixels and of mid-tone pixels. Handwriting is
mostly background with thin strokes and few mid-tones; photos, textures and gradients are mostly
mid-tones. An image is out of domain when any statistic falls outside the recorded range widened
by ``MARGIN`` (MNIST's thick digits, never trained on, sit just inside it)::

    "domain": {"description": str, "images": int, "data": str, "split": str | null,
               "features": {name: {"low": float, "high": float, "q001": float, "q999": float}}}

Nothing here runs unless asked (``EmbeddingModel.out_of_domain``): predictions never pay for it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

DARK, LIGHT = 40, 215  # uint8 bounds of "background" and of "mid-tone" pixels
# Fraction of pixels the statistics may stray beyond the reference images' 0.1%-99.9% range. With the
# default model's 2,260 held-out validation images, 0.10 flagged 0.86% of MNIST test digits (thicker
# strokes than any Omniglot drawing), 0.15 flags 0.05% and still 99.5% of photo-like images
# (benchmarks/domain_check.py).
MARGIN = 0.15
QUANTILES = (0.001, 0.999)


def _dark(gray: np.ndarray) -> np.ndarray:
    return (gray < DARK).mean(axis=1)


def _mid(gray: np.ndarray) -> np.ndarray:
    return ((gray >= DARK) & (gray <= LIGHT)).mean(axis=1)


FEATURES: dict[str, Callable[[np.ndarray], np.ndarray]] = {"dark_fraction": _dark, "midtone_fraction": _mid}


def image_features(batch: np.ndarray) -> dict[str, np.ndarray]:
    """Prepared uint8 [N, H, W, C] -> {feature name: float64 [N]} (channels averaged to gray)."""
    gray = (
        batch.reshape(len(batch), -1, batch.shape[-1]).mean(axis=2)
        if batch.ndim == 4
        else batch.reshape(len(batch), -1)
    )
    return {name: f(gray) for name, f in FEATURES.items()}


def fit_domain(batch: np.ndarray, description: str, **source: Any) -> dict[str, Any]:
    """The ``domain`` metadata for reference images uint8 [N, H, W, C]; ``source``: data, split, ..."""
    if len(batch) == 0:
        raise ValueError("the domain statistics need at least one reference image")
    features = {}
    for name, values in image_features(batch).items():
        q_lo, q_hi = (float(v) for v in np.quantile(values, QUANTILES))
        features[name] = {"q001": q_lo, "q999": q_hi, "low": max(0.0, q_lo - MARGIN), "high": min(1.0, q_hi + MARGIN)}
    return {"description": description, "images": len(batch), **source, "features": features}


def check_domain(domain: Any) -> dict[str, Any]:
    """Validate ``domain`` metadata read from a file; ValueError when malformed."""
    if not isinstance(domain, dict) or not isinstance(domain.get("features", {}), dict):
        raise ValueError("domain must be an object with a features object")
    for name, bounds in domain.get("features", {}).items():
        if name not in FEATURES:
            continue  # a statistic of a newer edgemeta: not checked here
        low, high = float(bounds["low"]), float(bounds["high"])
        if not (math.isfinite(low) and math.isfinite(high) and low <= high):
            raise ValueError(f"domain feature {name} has an invalid range")
    return domain


def out_of_domain(batch: np.ndarray, domain: dict[str, Any]) -> np.ndarray:
    """bool [N]: which prepared images (uint8 [N, H, W, C]) fall outside the recorded ranges;
    all False when the model records no domain."""
    flags = np.zeros(len(batch), dtype=bool)
    known = {k: v for k, v in (domain or {}).get("features", {}).items() if k in FEATURES}
    if not known or len(batch) == 0:
        return flags
    values = image_features(batch)
    for name, bounds in known.items():
        flags |= (values[name] < float(bounds["low"])) | (values[name] > float(bounds["high"]))
    return flags


def warning_line(flags: np.ndarray, domain: dict[str, Any]) -> str | None:
    """One line for stderr when most of a call's images (flags bool [N]) look out of domain; else None."""
    if len(flags) == 0 or 2 * int(flags.sum()) <= len(flags):
        return None
    what = domain.get("description") or "its training images"
    return (
        f"Warning: {int(flags.sum())} of {len(flags)} image(s) look unlike what the model was trained on "
        f"({what}), e.g. photos or textures; its answers on them are unreliable: see models/README.md"
    )


def describe_domain(domain: dict[str, Any]) -> str:
    """One line for ``edgemeta info``: what the model was trained on and which inputs it flags."""
    if not domain.get("features"):
        return "not recorded (no input is flagged)"
    ranges = ", ".join(f"{name} outside [{b['low']:.2f}, {b['high']:.2f}]" for name, b in domain["features"].items())
    return f"{domain.get('description', 'its training images')}; flags images with {ranges}"
