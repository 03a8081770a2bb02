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

# Classes a run on these splits never trained on (vinyals-trainval trains on vinyals-val too).
HELD_OUT_SPLIT = {"vinyals-train": "vinyals-val", "vinyals-trainval": "vinyals-test"}
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
    held_out: str = ""  # which classes, when they are ones the run never trained on ("": not known to be)

    def describe(self) -> dict[str, Any]:
        return {
            "data": self.source,
            "split": self.split,
            "synthetic": self.synthetic,
            "images": int(len(self.images)),
            "classes": int(len(np.unique(self.targets))),
            "held_out": self.held_out or None,
        }


def choose_source(config: dict[str, Any], data: str | None, split: str | None) -> tuple[str | None, str | None]:
    """(source, split) of training images (int8 calibration): ``--data``/``--split`` when given, else the run's;
    ``load_validation`` chooses the held-out ones."""
    if data is not None:
        return data, split
    return config.get("data"), split if split is not None else config.get("split")


def load_images(
    source: str | None,
    split: str | None,
    spec: PreprocessSpec,
    *,
    explicit: bool,
    max_classes: int = MAX_CLASSES,
    seed: int = 0,
) -> ImageSet:
    """Load ``source`` (at most ``max_classes`` random classes), else synthetic images.

    A source named by the user (``explicit``) must load; the run's recorded source may be gone
    (another machine), and then synthetic images stand in, with a warning.
    """
    from edgemeta.lab.fetch import is_named

    if source is not None and (explicit or is_named(source) or Path(source).expanduser().exists()):
        from edgemeta.lab.datasets import load_source

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


def _subset(
    images: np.ndarray, targets: np.ndarray, max_classes: int, seed: int, keep: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_classes`` random classes (of ``keep``, int [K], when given), relabelled 0..n-1."""
    classes = np.unique(targets) if keep is None else keep
    if len(classes) > max_classes:
        classes = np.sort(np.random.default_rng(seed).choice(classes, max_classes, replace=False))
    keep = np.isin(targets, classes)
    remap = np.searchsorted(classes, targets[keep])
    return images[keep], remap.astype(np.int64)


def synthetic_images(
    spec: PreprocessSpec, classes: int = 20, per_class: int = 20, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
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


# Export verifies on 5-way episodes (export/verify.py).
VERIFY_WAY = 5


def load_validation(
    config: dict[str, Any], data: str | None, split: str | None, spec: PreprocessSpec, seed: int = 0
) -> ImageSet:
    """Classes the run never trained on, to verify and measure on: the ``split`` named with
    --split; else, on the run's own source, its validation split (``vinyals-train``), the test split
    (``vinyals-trainval``: its validation classes were trained on) or the classes its training held
    out (``edgemeta.lab.datasets.held_out_classes``, without rotations); on another source, all of it."""
    source = data if data is not None else config.get("data")
    explicit = data is not None
    train_split = config.get("split")
    if split is not None:
        named = (
            "" if split == train_split else f"split {split}, named with --split"
        )  # training's own split: not held out
        return _named(load_images(source, split, spec, explicit=explicit, seed=seed), named)
    if source is None or not (explicit or Path(source).expanduser().exists()):
        return load_images(None, None, spec, explicit=False, seed=seed)
    if not _same_source(source, config.get("data")):
        return _named(
            load_images(source, None, spec, explicit=explicit, seed=seed), "another source than the training data"
        )
    if train_split in HELD_OUT_SPLIT:
        held = HELD_OUT_SPLIT[train_split]
        return _named(load_images(source, held, spec, explicit=explicit, seed=seed), f"split {held}")
    return _held_out_classes(source, train_split, spec, config, seed)


def _named(images: ImageSet, held_out: str) -> ImageSet:
    images.held_out = "" if images.synthetic else held_out
    return images


def _same_source(a: str, b: Any) -> bool:
    return b is not None and Path(a).expanduser().resolve() == Path(str(b)).expanduser().resolve()


def _held_out_classes(
    source: str, split: str | None, spec: PreprocessSpec, config: dict[str, Any], seed: int
) -> ImageSet:
    from edgemeta.lab.datasets import held_out_classes, load_source

    fs = load_source(source, spec, split=split)
    mask = held_out_classes(fs, int(config.get("val_groups", 4)), int(config.get("test_way", 5)))
    if mask.sum() < VERIFY_WAY:  # too few to verify on: the figures then say they are not held out
        log.warning("the run held out fewer than %d classes; verifying on its training classes", VERIFY_WAY)
        images, targets = _subset(fs.images, fs.targets, MAX_CLASSES, seed)
        return ImageSet(images, targets, str(source), split, False)
    groups = sorted({g for g, m in zip(fs.class_groups, mask) if m and g})
    images, targets = _subset(fs.images, fs.targets, MAX_CLASSES, seed, keep=np.flatnonzero(mask))
    what = (
        f"{len(groups)} group(s) held out from training: {', '.join(groups)}"
        if groups
        else "classes held out from training"
    )
    return ImageSet(images, targets, str(source), split, False, what)


def domain_metadata(config: dict[str, Any], val: ImageSet) -> dict[str, Any]:
    """The ``domain`` metadata (``edgemeta.runtime.domain``) from the validation images, the
    training source's held-out classes; {} for synthetic stand-ins."""
    from edgemeta.runtime.domain import fit_domain

    if val.synthetic:
        return {}
    source = str(config.get("data") or val.source)
    what = (
        "handwritten characters (Omniglot)"
        if "omniglot" in source.lower()
        else f"images like those of {Path(source).name}"
    )
    return fit_domain(
        val.images,
        what,
        data=val.source,
        split=val.split,
        classes=val.describe()["classes"],
        held_out=val.held_out or None,
    )
