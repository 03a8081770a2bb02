"""Validation during training: accuracy with a 95% CI on held-out classes, then ``last.pt``
and (when it improved) ``best.pt``."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import save_checkpoint
from .loss import episode_logits, per_episode_accuracy
from .progress import log_row
from .run_state import RunState
from .sampler import TrainingEpisodeSampler


def autocast(cfg: Any) -> contextlib.AbstractContextManager:
    if cfg.precision == "bf16":
        return torch.autocast(device_type=cfg.device, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def validation_accuracy(
    model: torch.nn.Module,
    sampler: TrainingEpisodeSampler,
    pipe: Callable[[torch.Tensor], torch.Tensor],
    cfg: Any,
    batches: int,
) -> tuple[float, float]:
    """Mean accuracy and 95% CI half-width over ``batches * E`` episodes (fixed seed: same episodes each time)."""
    model.eval()
    sampler.generator.manual_seed(cfg.seed + 1)
    accs = []
    with torch.no_grad(), autocast(cfg):
        for _ in range(batches):
            emb = model(pipe(sampler.sample()))
            emb = emb.view(sampler.episodes, sampler.way, sampler.shot + sampler.query, -1)
            accs.append(per_episode_accuracy(*episode_logits(emb, sampler.shot, cfg.metric)))
    model.train()
    acc = torch.cat(accs).double().cpu().numpy()
    return float(acc.mean()), float(1.96 * acc.std(ddof=1) / np.sqrt(len(acc))) if len(acc) > 1 else 0.0


def validate(
    cfg: Any,
    model: torch.nn.Module,
    val_sampler: TrainingEpisodeSampler | None,
    pipe: Any,
    state: RunState,
    metrics: Any,
    bar: Any,
    out: Path,
    checkpoint_state: Callable[[], dict[str, Any]],
) -> bool:
    """Validate, log, save last/best; True when early stopping says stop."""
    improved = True
    if val_sampler is not None:
        acc, ci = validation_accuracy(model, val_sampler, pipe, cfg, max(1, cfg.val_episodes // val_sampler.episodes))
        log_row(
            metrics,
            episode=state.episode,
            val_acc=acc,
            val_ci95=ci,
            time=state.elapsed,
            val_task=f"{cfg.test_way}-way {cfg.test_shot}-shot",
        )
        bar.write(
            f"episode {state.episode}: val {cfg.test_way}-way {cfg.test_shot}-shot "
            f"{100 * acc:.2f}% +- {100 * ci:.2f} ({state.elapsed:.0f}s)",
            file=sys.stderr,
        )
        improved = state.record_validation(acc, ci, cfg.target)
    else:
        state.record_no_validation()
    ckpt = checkpoint_state()
    save_checkpoint(out / "last.pt", ckpt)
    if improved:
        save_checkpoint(out / "best.pt", ckpt)
    return state.should_stop(cfg.target, cfg.patience)
