"""Images for verification, thresholds and int8 calibration: the training source, else synthetic.

Every array here is already prepared: uint8 [M, H, W, C] at the model's input spec.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgemeta.runtime.errors import DataError
from edgemeta.runtime.preprocess import PreprocessSpec

# The held-out split that goes with a training split (verification should not see training classes).
# Only the Vinyals split has a validation set; other runs verify on their training split.
VALIDATION_SPLIT = {"vinyals-train": "vinyals-val"}
MAX_CLASSES = 400
log = logging.getLogger(__name__)


@dataclass
class ImageSet:
    """images uint8 [M, H, W, C]; targets int64 [M] (class ids 0..); where they came from."""

    images: np.ndarray
    targets: np.ndarray
    source: str
    split: str | None
    synthetic: bool

    def describe(self) -> dict[str, Any]:
        return {"data": self.source, "split": self.split, "synthetic": self.synthetic,
                "images": int(len(self.images)), "classes": int(len(np.unique(self.targets)))}


def choose_source(config: dict[str, Any], data: str | None, split: str | None,
                  validation: bool) -> tuple[str | None, str | None]:
    """(source, split) to load: ``--data``/``--split`` when given, else the run's, moved to its held-out split."""
    if data is not None:
        return data, split
    source, train_split = config.get("data"), config.get("split")
    if split is not None:
        return source, split
    if validation and train_split in VALIDATION_SPLIT:
        return source, VALIDATION_SPLIT[train_split]
    return source, train_split


def load_images(source: str | None, split: str | None, spec: PreprocessSpec, *, explicit: bool,
                max_classes: int = MAX_CLASSES, seed: int = 0) -> ImageSet:
    """Load ``source`` (at most ``max_classes`` random classes), else synthetic images.

    A source named by the user (``explicit``) must load; the run's recorded source may be gone
    (another machine), and then synthetic images stand in, with a warning.
    """
    if source is not None and (explicit or Path(source).expanduser().exists()):
        from edgemeta.runtime.datasets import load_source

        try:
            fs = load_source(source, spec, split=split)
        except DataError:
            if explicit:
                raise
            log.warning("cannot load the training source %s; using synthetic images", source)
        else:
            images, targets = _subset(fs.images, fs.targets, max_classes, seed)
            return ImageSet(images, targets, str(source), split, False)
    log.warning("no training source available; verifying on synthetic images")
    images, targets = synthetic_images(spec, classes=20, per_class=20, seed=seed)
    return ImageSet(images, targets, "synthetic", None, True)


def _subset(images: np.ndarray, targets: np.ndarray, max_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    classes = np.unique(targets)
    if len(classes) > max_classes:
        classes = np.sort(np.random.default_rng(seed).choice(classes, max_classes, replace=False))
    keep = np.isin(targets, classes)
    remap = np.searchsorted(classes, targets[keep])
    return images[keep], remap.astype(np.int64)


def synthetic_images(spec: PreprocessSpec, classes: int = 20, per_class: int = 20,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Separable stand-in images: per class a random coarse 4x4 block pattern, per image fresh noise.

    Even a random network tells these classes apart (so decisions are stable enough to compare).
    Returns images uint8 [classes * per_class, H, W, C] and targets int64 [classes * per_class].
    """
    rng = np.random.default_rng(seed)
    h, w = spec.size
    coarse = (rng.random((classes, 4, 4, spec.channels)) > 0.5) * rng.uniform(0.3, 1.0, (classes, 1, 1, spec.channels))
    templates = np.kron(coarse, np.ones((h // 4 + 1, w // 4 + 1, 1)))[:, :h, :w]
    imgs = np.repeat(templates, per_class, axis=0)
    imgs = np.clip(imgs * 255 + rng.normal(0, 20, imgs.shape), 0, 255).astype(np.uint8)
    if spec.polarity == "dark_on_light":
        imgs = 255 - imgs
    return imgs, np.repeat(np.arange(classes, dtype=np.int64), per_class)
