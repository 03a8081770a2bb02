"""Training and validation data for a run: the split, and held-out classes to validate on."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgemeta.lab.datasets import FewShotData, held_out_classes, is_named, is_omniglot, load_source, resolve
from edgemeta.runtime.errors import DataError
from edgemeta.runtime.preprocess import PreprocessSpec

from . import distributed
from .input_spec import note

DEFAULT_WAY = 60  # training way when --way is not given and the data has as many classes


def subset(data: FewShotData, keep: np.ndarray) -> FewShotData:
    """The classes where ``keep`` (bool [num_classes]) is True, relabelled 0..n-1."""
    new_label = np.cumsum(keep) - 1
    rows = keep[data.targets]
    return FewShotData(
        data.images[rows],
        new_label[data.targets[rows]].astype(np.int64),
        [n for n, k in zip(data.class_names, keep) if k],
        [g for g, k in zip(data.class_groups, keep) if k],
    )


def _unrotated(data: FewShotData) -> np.ndarray:
    return np.array([not n.endswith(("/rot090", "/rot180", "/rot270")) for n in data.class_names])


def fetch_once(cfg: Any, info: distributed.DistInfo) -> None:
    """A named source (``--data omniglot``) not yet on disk is downloaded once per machine, by its
    local rank 0; the other ranks wait, then read that copy from the cache."""
    if is_named(str(cfg.data)):
        if info.local_rank == 0:
            resolve(cfg.data, cfg.split)
        distributed.barrier(info)


def load_train_val(cfg: Any, spec: PreprocessSpec) -> tuple[FewShotData, FewShotData | None, dict[str, Any]]:
    """(training data, validation data or None, facts for config.json).

    Vinyals splits validate on ``vinyals-val`` (for ``vinyals-trainval`` those classes are also
    trained on: the curve then tracks fit, not generalization). Other sources hold out a fixed
    slice of alphabets (or classes), validated without rotations like the Lake test.
    """
    data = load_source(cfg.data, spec, cfg.split, cfg.rotations if is_omniglot(cfg.data) else None)
    val_split = None
    if cfg.split in ("vinyals-train", "vinyals-trainval"):
        val_split = "vinyals-val"
        val = load_source(cfg.data, spec, val_split, False)
        train = data
    else:
        mask = held_out_classes(data, cfg.val_groups, cfg.test_way)
        train = subset(data, ~mask)
        val = subset(data, mask & _unrotated(data)) if mask.any() else None
    if not cfg.way:  # not given: as many classes as the data allows, up to the usual 60
        cfg.way = max(2, min(DEFAULT_WAY, _eligible(train, max(cfg.shot) + cfg.query)))
        note(f"--way {cfg.way} (training classes with enough examples: {_eligible(train, max(cfg.shot) + cfg.query)})")
    _check_fits(train, cfg.way, max(cfg.shot) + cfg.query, "training")
    if val is not None and _eligible(val, cfg.test_shot + cfg.test_query) < cfg.test_way:
        val = None
    info = {
        "train_classes": train.num_classes,
        "train_images": int(len(train.targets)),
        "val_classes": val.num_classes if val is not None else 0,
        "val_split": val_split,
        "val_held_out_groups": sorted({g for g in (val.class_groups if val and not val_split else []) if g}),
    }
    return train, val, info


def _eligible(data: FewShotData, need: int) -> int:
    return int((data.counts() >= need).sum())


def _check_fits(data: FewShotData, way: int, need: int, what: str) -> None:
    if data.num_classes < way:
        raise DataError(
            f"--way {way} is above the {data.num_classes} {what} classes of the data; give --way "
            f"{data.num_classes} or less, or leave it out (it then defaults to min({DEFAULT_WAY}, classes))"
        )
    if _eligible(data, need) < way:
        most = int(data.counts().max()) if data.num_classes else 0
        raise DataError(
            f"--shot + --query = {need} is above the examples per class "
            f"(at most {most}; {_eligible(data, need)} classes have {need})"
        )
