"""Checkpoints: ``{"format": "edgemeta-checkpoint", "version": 1, "config", "model", ...}``.

Written atomically, read with ``torch.load(weights_only=True)``; ``build_model_from_checkpoint``
rebuilds the network from the config alone.
"""

from __future__ import annotations

import contextlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from edgemeta.runtime.errors import CheckpointError
from edgemeta.runtime.files import atomic_write, temp_pattern

from .backbones import build_backbone

FORMAT = "edgemeta-checkpoint"
VERSION = 1


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (plus format and version) to ``path`` atomically and durably: a crash or
    a killed worker at any moment leaves the previous file (or none), never a torn one."""
    path = Path(path)
    atomic_write(path, lambda f: torch.save({"format": FORMAT, "version": VERSION, **state}, f))
    _remove_stale_temps(path)


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files of ``path`` left by writers that were killed mid-save. Only rank 0
    of one run writes a run folder, so any other temp of this name belongs to a dead writer."""
    for stale in path.parent.glob(temp_pattern(path.name)):
        with contextlib.suppress(OSError):
            stale.unlink()


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict at ``path`` (or ``RUN_DIR/best.pt`` for a folder), on the CPU."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(
            f"not a readable checkpoint: {path} ({str(e).splitlines()[0] if str(e) else type(e).__name__})"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"not an edgemeta checkpoint: {path}")
    if ckpt.get("version") != VERSION:
        raise CheckpointError(
            f"checkpoint version {ckpt.get('version')} of {path} is not supported (expected {VERSION})"
        )
    for key in ("config", "model"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"checkpoint {path} lacks its {key!r}")
    return ckpt


def build_model_from_checkpoint(ckpt: dict[str, Any]) -> nn.Module:
    """The trained embedding network of ``ckpt``, in eval mode on the CPU."""
    cfg = ckpt["config"]
    try:
        model = build_backbone(cfg["backbone"], int(cfg["in_channels"]), **cfg.get("backbone_kwargs", {}))
        model.load_state_dict(ckpt["model"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint does not fit its backbone: {str(e).splitlines()[0]}") from None
    return model.eval()
