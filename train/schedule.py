"""The learning-rate schedule and the run's clock."""

from __future__ import annotations

import time
from typing import Any

import torch

from . import distributed
from .distributed import DistInfo


def clock(t0: float, cfg: Any, info: DistInfo) -> float:
    """Seconds since the start; with a time limit one clock for all ranks (the slowest)."""
    elapsed = time.perf_counter() - t0
    return distributed.agree_max(elapsed, info) if cfg.time_limit > 0 else elapsed


def learning_rate(cfg: Any, episode: int, elapsed: float) -> float:
    """Step schedule: x lr_gamma every lr_step episodes, or (lr_schedule "time") at every eighth
    of time_limit, so that a run bounded by time still completes its schedule."""
    if cfg.lr_schedule == "time" and cfg.time_limit > 0:
        halvings = int(8 * min(elapsed / cfg.time_limit, 1.0))
    else:
        halvings = episode // max(1, cfg.lr_step)
    return cfg.lr * cfg.lr_gamma**halvings


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
