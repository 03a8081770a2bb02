"""Resuming a run from ``last.pt``, with the same or another number of processes."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from edgemeta.runtime.errors import CheckpointError, DataError, RunExistsError
from edgemeta.runtime.files import atomic_write, temp_pattern

from . import distributed
from .checkpoint import read_checkpoint
from .distributed import DistInfo

RUN_FILES = ("config.json", "last.pt", "best.pt", "metrics.jsonl")  # any of these: the folder holds a run
OUTPUTS = (*RUN_FILES, "summary.json", "curves.png")


def resume_checkpoint(out: Path, resume: bool, info: DistInfo) -> dict[str, Any] | None:
    """``out/last.pt`` when resuming, read by rank 0 and sent to all: no shared disk needed."""
    ckpt = None
    if resume and info.is_main and (out / "last.pt").is_file():
        ckpt = read_checkpoint(out / "last.pt")
    return distributed.from_main(ckpt, info)


def trim_metrics(path: Path, episode: int) -> None:
    """Drop the rows of ``metrics.jsonl`` logged after ``episode`` (the checkpoint resumed from):
    they describe steps that are about to be redone, and would fold the curves back on themselves.
    A torn last line (the process killed mid-write) goes too."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.endswith("\n") and _row_episode(line) <= episode]
    if len(kept) != len(lines):
        atomic_write(path, "".join(kept).encode())


def _row_episode(line: str) -> float:
    """The row's episode; infinity for a line that is not a JSON row (dropped)."""
    try:
        return float(json.loads(line)["episode"])
    except (ValueError, KeyError, TypeError):
        return float("inf")


def saved_config(ckpt: dict[str, Any], cfg: Any) -> Any:
    """The run's saved ``TrainConfig``; ``device``, ``out``, a nonzero ``episodes`` and a nonzero
    ``episodes_per_step`` come from ``cfg``."""
    names = {f.name for f in dataclasses.fields(cfg)}
    restored = type(cfg)(**{k: v for k, v in ckpt["config"].items() if k in names})
    restored.device, restored.out = cfg.device, cfg.out
    if cfg.episodes > 0:  # extend (or shorten) the run; 0 keeps its own count
        restored.episodes = cfg.episodes
    if cfg.episodes_per_step > 0:  # e.g. keep the global batch when the number of processes changes
        restored.episodes_per_step = cfg.episodes_per_step
    return restored


def restore(
    ckpt: dict[str, Any],
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    samplers: list,
    pipe: Any,
    info: DistInfo,
) -> None:
    """Weights, optimizer and RNG states on every rank (the run state: ``RunState.from_checkpoint``).
    The episode stream is shared by all ranks (one saved state serves any world size); augmentation
    is rank-local: rank 0 takes the saved state, the others re-seed from (seed, rank, episode)."""
    model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    rng = ckpt["rng"]
    torch.set_rng_state(rng["torch"])
    for s, st in zip(samplers, rng["samplers"]):
        s.set_state(st)
    if "python" in rng:  # older checkpoints lack python's and numpy's states
        random.setstate(rng["python"])
        np.random.set_state(("MT19937", rng["numpy"]["keys"].numpy().astype(np.uint32), *rng["numpy"]["rest"]))
    if info.is_main:
        pipe.generator.set_state(rng["augment"])
        if "cuda" in rng and pipe.generator.device.type == "cuda":
            torch.cuda.set_rng_state(rng["cuda"], pipe.generator.device)
    else:
        pipe.reseed(distributed.rank_seed(ckpt["config"]["seed"], info.rank, ckpt["episode"]))


def seed_all(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (saved and restored with the run
    by ``rng_state``/``restore``, so that anything drawing from them resumes exactly)."""
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.manual_seed(seed)


def rng_state(samplers: list, pipe: Any) -> dict[str, Any]:
    """Every random state of the run, as tensors and plain values (``weights_only`` loads them)."""
    legacy = np.random.get_state(legacy=True)
    assert isinstance(legacy, tuple)
    _, keys, pos, has_gauss, gauss = legacy
    rng = {
        "torch": torch.get_rng_state(),
        "samplers": [s.state() for s in samplers],
        "augment": pipe.generator.get_state(),
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "rest": [int(pos), int(has_gauss), float(gauss)]},
    }
    if pipe.generator.device.type == "cuda":
        rng["cuda"] = torch.cuda.get_rng_state(pipe.generator.device)
    return rng


def check_out(out: Path, resume: bool, overwrite: bool, info: DistInfo) -> None:
    """Refuse to start a new run in a folder that holds one, unless resuming or overwriting
    (rank 0 looks, every rank raises)."""
    if resume and overwrite:
        raise DataError("--resume and --overwrite exclude each other")
    problem = None
    if info.is_main and not (resume or overwrite):
        found = [name for name in RUN_FILES if (out / name).exists()]
        if found:
            problem = (
                f"--out {out} already holds a run ({', '.join(found)}); add --resume to continue it "
                "or --overwrite to replace it"
            )
    problem = distributed.from_main(problem, info)
    if problem:
        raise RunExistsError(problem)


def clear_run(out: Path) -> None:
    """Remove a previous run's outputs before a fresh run writes its first file, so that nothing
    of it is appended to or mistaken for this run's (``--overwrite``; ``--resume`` without a last.pt)."""
    for name in OUTPUTS:
        (out / name).unlink(missing_ok=True)
        for temp in out.glob(temp_pattern(name)):
            temp.unlink(missing_ok=True)


def warm_start(model: torch.nn.Module, cfg: Any) -> None:
    """Load the weights of ``cfg.init`` (a checkpoint, or a run folder's ``best.pt``) into ``model``.
    Only the weights: the optimizer, schedule and episode count start afresh (fine-tuning). The
    input size may differ (fine-tuning at a higher resolution): the backbones' weights do not
    depend on it, and a network whose weights did would fail ``load_state_dict`` below."""
    ckpt = read_checkpoint(cfg.init)
    saved = ckpt["config"]
    mine = {"backbone": cfg.backbone, "backbone_kwargs": cfg.backbone_kwargs}
    for key, value in mine.items():
        if saved.get(key) != value:
            raise CheckpointError(f"--init {cfg.init}: its {key} is {saved.get(key)!r}, this run's is {value!r}")
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise CheckpointError(f"--init {cfg.init} does not fit this network: {str(e).splitlines()[0]}") from None
