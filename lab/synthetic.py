"""Synthetic inputs for benchmarks: handwriting-like noise at a model's input size."""

from __future__ import annotations

from typing import Any

import numpy as np


def random_images(model: Any, batch: int, seed: int = 0) -> np.ndarray:
    """uint8 [batch, H, W, C] at the model's size: sparse bright strokes on a dark background."""
    spec = model.meta.preprocess
    rng = np.random.default_rng(seed)
    shape = (batch, spec.size[0], spec.size[1], spec.channels)
    return np.where(rng.random(shape) < 0.15, rng.integers(128, 256, shape), 0).astype(np.uint8)
