"""A run's input encoding: channels (from the data unless given), polarity, aspect policy and
mean/std (from the training images for photos unless given).

Photos are colour models, and grayscale models of a folder of colour photos: polarity ``none`` (a
busy background gives the border rule a coin flip, which would invert half the training images
at random), mean/std from the training images and photometric rather than stroke augmentation.
Ink on paper (Omniglot, MNIST, grayscale folders) keeps ``light_on_dark`` with auto polarity and
(0, 1), the encoding of every grayscale model so far.

Everything is resolved once into the ``TrainConfig`` fields (``channels``, ``polarity``, ``mean``,
``std``, ``aspect``), so a resumed run, ``config.json`` and export all see the same encoding.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import numpy as np

from edgemeta.lab.datasets import colour_source
from edgemeta.runtime.errors import DataError
from edgemeta.runtime.preprocess import PreprocessSpec

# Colour photos keep their aspect: letterbox pads rather than crops, so an object near the edge of
# a non-square photo stays in the picture (center_crop would cut it off) and is not squashed.
COLOUR_ASPECT = "letterbox"
_HAS_ASPECT = "aspect" in {f.name for f in dataclasses.fields(PreprocessSpec)}


def note(text: str) -> None:
    print(f"edgemeta train: {text}", file=sys.stderr, flush=True)


def init_preprocess(init: str) -> dict[str, Any] | None:
    """The preprocessing recorded in ``--init``'s checkpoint, run folder or ONNX file (None if unreadable
    here: the warm start itself then reports the problem)."""
    from .checkpoint import read_checkpoint
    from .onnx_init import is_onnx_file, read_onnx

    try:
        if is_onnx_file(init):
            return read_onnx(init)[0].get("preprocess")
        return read_checkpoint(init)["config"].get("preprocess")
    except Exception:  # noqa: BLE001  # any failure is reported by the warm start with its own message
        return None


def resolve_input(cfg: Any) -> None:
    """Fill ``cfg.channels`` (0: from ``--init``'s model, else 3 for a folder of colour images, else 1)
    and ``cfg.polarity``; when fine-tuning without ``--mean/--std``, take the initial model's encoding."""
    init = init_preprocess(cfg.init) if cfg.init else None
    colour = None if init else colour_source(cfg.data)
    if not cfg.channels:
        if init:
            cfg.channels = int(init["channels"])
        else:
            cfg.channels = 3 if colour else 1
            if cfg.channels == 3:
                note("the data holds colour images: training in colour (RGB); --channels 1 for grayscale")
    if init and int(init.get("channels", 0)) == cfg.channels:
        if not cfg.mean and not cfg.std:  # the network was trained on this encoding: keep it
            cfg.mean, cfg.std = list(init["mean"]), list(init["std"])
        cfg.aspect = cfg.aspect or init.get("aspect", "")
        cfg.polarity = cfg.polarity or init.get("polarity", "")
    elif cfg.channels == 1 and colour and not cfg.polarity:
        cfg.polarity = "none"
        note(
            "grayscale run on colour photos: polarity none (no inversion by the border), mean/std from the "
            "training images, brightness/contrast jitter instead of stroke width"
        )
    for name in ("mean", "std"):
        values = getattr(cfg, name)
        if values and len(values) != cfg.channels:
            raise DataError(f"--{name} needs {cfg.channels} values (one per channel), got {len(values)}")
    if any(not np.isfinite(v) for v in [*cfg.mean, *cfg.std]) or any(v <= 0 for v in cfg.std):
        raise DataError(f"--mean must be finite and --std positive, got --mean {cfg.mean} --std {cfg.std}")


def preprocess_spec(cfg: Any) -> PreprocessSpec:
    """The run's ``PreprocessSpec``: colour models take polarity ``none`` and keep the aspect,
    grayscale ones ``cfg.polarity`` (empty: ``light_on_dark``) and stretch; mean/std are (0, 1)
    until ``fit_statistics`` (or ``--mean/--std``) sets them."""
    c = cfg.channels or 1
    colour = c == 3
    extra = {"aspect": cfg.aspect or (COLOUR_ASPECT if colour else "stretch")} if _HAS_ASPECT else {}
    return PreprocessSpec(
        size=(cfg.size, cfg.size),
        channels=c,
        polarity=getattr(cfg, "polarity", "") or ("none" if colour else "light_on_dark"),
        mean=tuple(cfg.mean) if cfg.mean else (0.0,) * c,
        std=tuple(cfg.std) if cfg.std else (1.0,) * c,
        **extra,
    )


def channel_statistics(images: np.ndarray, chunk: int = 4096) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (lists of C floats, 0..1 scale) of ``images`` uint8 [M, H, W, C],
    accumulated in chunks so a large set needs no float copy of itself."""
    c = images.shape[-1]
    total, total_sq, n = np.zeros(c), np.zeros(c), 0
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].reshape(-1, c).astype(np.float64) / 255.0
        total += x.sum(axis=0)
        total_sq += (x * x).sum(axis=0)
        n += len(x)
    mean = total / max(n, 1)
    std = np.sqrt(np.maximum(total_sq / max(n, 1) - mean * mean, 0.0))
    return [round(float(m), 6) for m in mean], [round(float(max(s, 1e-3)), 6) for s in std]


def fit_statistics(cfg: Any, images: np.ndarray) -> PreprocessSpec:
    """The final spec: a run on photos (polarity ``none``: colour, or grayscale of colour photos)
    without ``--mean/--std`` normalizes by the training images' statistics (``images``: uint8
    [M, H, W, C]), recorded in ``cfg``. Ink-on-paper runs keep (0, 1), the encoding of every
    grayscale model so far."""
    if preprocess_spec(cfg).polarity == "none" and not (cfg.mean and cfg.std):
        mean, std = channel_statistics(images)
        cfg.mean, cfg.std = cfg.mean or mean, cfg.std or std
    return preprocess_spec(cfg)
