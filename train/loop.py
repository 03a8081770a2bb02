"""The training loop, top to bottom: config -> data -> model -> optimizer -> episodes.

Each optimizer step draws E episodes at once on the device (uint8 data resident there),
runs them through the network as one batch (bf16 autocast + channels_last where it helps)
and averages their prototypical losses. Validation every V episodes on held-out classes
with a 95% CI; the best checkpoint is kept; early stopping after ``patience`` validations
without improvement; ``resume`` continues exactly from ``last.pt``, which is also saved every
minute and on SIGINT/SIGTERM (``interrupt.py``). Under ``torchrun`` the
same loop runs on every rank with DDP (``distributed.py``): rank 0 alone validates and writes.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

import torch

from edgemeta.lab.datasets import FewShotData
from edgemeta.runtime.errors import DataError
from edgemeta.runtime.preprocess import PreprocessSpec, normalize_constants

from . import distributed
from .augment import PRESETS, augment, for_channels
from .backbones import build_backbone, embedding_dim
from .checkpoint import save_checkpoint
from .config import TrainConfig, resolve
from .curves import plot_curves
from .data import fetch_once, load_train_val
from .distributed import DistInfo
from .input_spec import fit_statistics, preprocess_spec, resolve_input
from .interrupt import RunGuard
from .loss import episode_logits, prototypical_loss
from .onnx_init import is_onnx_file, warm_start_from_onnx
from .progress import log_row, progress_bar
from .resume import (
    check_out,
    clear_run,
    restore,
    resume_checkpoint,
    rng_state,
    saved_config,
    seed_all,
    trim_metrics,
    warm_start,
)
from .run_state import RunState
from .sampler import TrainingEpisodeSampler, to_device_images
from .schedule import clock, learning_rate, set_learning_rate
from .validation import autocast, validate


class InputPipe:
    """uint8 [B, C, H, W] on the device -> the model input, exactly ``x * scale + offset``."""

    def __init__(
        self,
        spec: PreprocessSpec,
        device: torch.device,
        augment_name: str = "none",
        seed: int = 0,
        channels_last: bool = False,
    ) -> None:
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        scale, offset = normalize_constants(spec)
        self.scale = torch.as_tensor(scale, device=device).view(1, -1, 1, 1)
        self.offset = torch.as_tensor(offset, device=device).view(1, -1, 1, 1)
        photo = spec.polarity == "none"  # colour, or grayscale photos (train/input_spec.py)
        self.augment = for_channels(PRESETS[augment_name], spec.channels, photo)
        # Photos: pixels moved in by the affine take the data's mean colour (ink: 0, the ink-bright background).
        self.fill = torch.tensor(spec.mean, device=device).view(1, -1, 1, 1) if photo else None
        self.generator = torch.Generator(device=device)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed + 7919)

    def __call__(self, x: torch.Tensor, train: bool = False) -> torch.Tensor:
        x = x.float()
        if train and self.augment is not None:
            x = augment(x * (1.0 / 255.0), self.augment, self.generator, self.fill) * 255.0
        x = x * self.scale + self.offset
        return x.contiguous(memory_format=self.memory_format)


def train(
    cfg: TrainConfig,
    resume: bool = False,
    progress: bool = True,
    overwrite: bool = False,
    checkpoint_minutes: float = 1.0,
) -> dict[str, Any]:
    """Run (or resume) training into ``cfg.out``; returns the summary written to ``summary.json``.

    resume: continue from ``out/last.pt`` with its saved config (only ``device``, a nonzero
    ``episodes`` and a nonzero ``episodes_per_step`` come from ``cfg``); without a ``last.pt`` it starts
    afresh. A folder holding a run is refused unless ``resume`` or ``overwrite`` (its outputs removed
    first). ``last.pt`` is also saved every ``checkpoint_minutes`` (0: never) and on SIGINT/SIGTERM,
    which then raise ``interrupt.Interrupted``. Under torchrun (``WORLD_SIZE`` > 1) this is one rank.
    """
    info = distributed.setup(_device_type(cfg.device))
    try:
        with RunGuard(checkpoint_minutes, info) as guard:
            return _train(cfg, resume, overwrite, progress, info, guard)
    finally:
        distributed.cleanup(info)


@dataclass
class Run:
    """What the loop's steps share: the resolved config, the network and its optimizer, the episode
    samplers and input pipe, the run state and the outputs (``metrics.jsonl``, the progress bar)."""

    cfg: TrainConfig
    out: Path
    info: DistInfo
    config: dict[str, Any]  # config.json, also saved in every checkpoint
    model: torch.nn.Module  # what is saved
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model as a step calls it (DDP, compiled)
    optimizer: torch.optim.Optimizer
    samplers: list[TrainingEpisodeSampler]  # one per shot count, cycled step by step
    val_sampler: TrainingEpisodeSampler | None  # held-out classes, rank 0 only
    pipe: InputPipe
    state: RunState
    metrics: IO[str]
    bar: Any


def _train(
    cfg: TrainConfig, resume: bool, overwrite: bool, progress: bool, info: DistInfo, guard: RunGuard
) -> dict[str, Any]:
    run = _prepare(cfg, resume, overwrite, progress, info)
    guard.close_on_exit(run.bar.close, run.metrics.close)
    cfg, state = run.cfg, run.state
    run.model.train()
    while state.episode < cfg.episodes and not state.stop:
        step_episodes, elapsed = _train_step(run)
        if state.step % cfg.log_every == 0 or state.episode >= cfg.episodes:
            _log_training(run)
        at_val = state.episode // cfg.val_every > (state.episode - step_episodes) // cfg.val_every
        out_of_time = cfg.time_limit > 0 and elapsed > cfg.time_limit
        if at_val or out_of_time or state.episode >= cfg.episodes:
            _validate(run, out_of_time)
            guard.saved()
        guard.after_step(state.episode, state.stop or state.episode >= cfg.episodes, lambda: _save_last(run))
    run.bar.close()
    run.metrics.close()
    return _finish(run)


def _prepare(cfg: TrainConfig, resume: bool, overwrite: bool, progress: bool, info: DistInfo) -> Run:
    """A fresh, resumed or warm-started run, its folder ready (``config.json`` written)."""
    out = Path(cfg.out)
    check_out(out, resume, overwrite, info)
    ckpt = resume_checkpoint(out, resume, info)
    cfg = resolve(cfg if ckpt is None else saved_config(ckpt, cfg))
    seed_all(cfg.seed)
    device = distributed.device_for(cfg.device, info)
    fetch_once(cfg, info)
    if ckpt is None:
        resolve_input(cfg)
    train_data, val_data, data_info = load_train_val(cfg, preprocess_spec(cfg))
    spec = fit_statistics(cfg, train_data.images)
    samplers, val_sampler, images = _episodes(cfg, train_data, val_data, device, info)
    pipe = InputPipe(spec, device, cfg.augment, distributed.rank_seed(cfg.seed, info.rank, 0), cfg.channels_last)
    model, optimizer, dim = _network(cfg, spec, device)
    forward = distributed.wrap(model, info)  # gradients averaged over ranks
    forward = torch.compile(forward) if cfg.compile else forward
    config = {
        **asdict(cfg),
        "in_channels": spec.channels,
        "preprocess": spec.to_dict(),
        "embedding_dim": dim,
        **data_info,
    }
    if ckpt is not None:
        restore(ckpt, model, optimizer, samplers, pipe, info)
    elif cfg.init and is_onnx_file(cfg.init):
        warm_start_from_onnx(model, cfg, spec.to_dict(), images, pipe)
    elif cfg.init:
        warm_start(model, cfg)
    state = RunState.from_checkpoint(ckpt, device)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        if ckpt is None:
            clear_run(out)
        else:
            trim_metrics(out / "metrics.jsonl", state.episode)
        (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    metrics = (out / "metrics.jsonl").open("a") if info.is_main else open(os.devnull, "w")
    bar = progress_bar(cfg.episodes, state.episode, progress and info.is_main)
    return Run(cfg, out, info, config, model, forward, optimizer, samplers, val_sampler, pipe, state, metrics, bar)


def _episodes(
    cfg: TrainConfig, train_data: FewShotData, val_data: FewShotData | None, device: torch.device, info: DistInfo
) -> tuple[list[TrainingEpisodeSampler], TrainingEpisodeSampler | None, torch.Tensor]:
    """The data, resident on the device as uint8: the training samplers (one per shot count, this
    rank's shard), rank 0's validation sampler (None without held-out data or on other ranks) and
    the training images uint8 [M, C, H, W]."""
    images = to_device_images(train_data.images, device)
    samplers = [
        TrainingEpisodeSampler(
            train_data.images,
            train_data.targets,
            cfg.way,
            k,
            cfg.query,
            cfg.episodes_per_step,
            device,
            cfg.seed + 17 * i,
            data=images,
            shard=(info.rank, info.world),
        )
        for i, k in enumerate(cfg.shot)
    ]
    val_sampler = None
    if val_data is not None and info.is_main:
        val_batch = max(1, min(50, cfg.val_episodes))
        val_sampler = TrainingEpisodeSampler(
            val_data.images,
            val_data.targets,
            cfg.test_way,
            cfg.test_shot,
            cfg.test_query,
            val_batch,
            device,
            cfg.seed + 1,
        )
    return samplers, val_sampler, images


def _network(
    cfg: TrainConfig, spec: PreprocessSpec, device: torch.device
) -> tuple[torch.nn.Module, torch.optim.Optimizer, int]:
    """The backbone on the device, its Adam optimizer and its embedding dimension."""
    model = build_backbone(cfg.backbone, spec.channels, **cfg.backbone_kwargs).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    dim = embedding_dim(model, spec.channels, spec.size)
    fused = {"fused": True} if device.type == "cuda" else {}
    return model, torch.optim.Adam(model.parameters(), lr=cfg.lr, **fused), dim


def _train_step(run: Run) -> tuple[int, float]:
    """One optimizer step on a batch of episodes; returns (its episodes, all ranks together;
    seconds trained when the learning rate was set)."""
    cfg, state = run.cfg, run.state
    sampler = run.samplers[state.step % len(run.samplers)]
    step_episodes = sampler.episodes * run.info.world  # global: the schedule counts all ranks' episodes
    with autocast(cfg):
        emb = run.forward(run.pipe(sampler.sample(), train=True))
        emb = emb.view(sampler.episodes, sampler.way, sampler.shot + sampler.query, -1)
        loss, acc = prototypical_loss(*episode_logits(emb, sampler.shot, cfg.metric))
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    elapsed = clock(state.started, cfg, run.info)
    set_learning_rate(run.optimizer, learning_rate(cfg, state.episode, elapsed))
    run.optimizer.step()
    state.log_sums += torch.stack([loss.detach().float(), acc.detach()])
    state.step += 1
    state.episode += step_episodes
    state.log_steps += 1
    run.bar.update(step_episodes)
    return step_episodes, elapsed


def _log_training(run: Run) -> None:
    """One ``metrics.jsonl`` row: loss and accuracy averaged over the steps since the last row and over ranks."""
    state = run.state
    loss, acc = (distributed.all_reduce_mean(state.log_sums, run.info) / state.log_steps).tolist()
    state.log_sums.zero_()
    state.log_steps = 0
    run.bar.set_postfix(loss=f"{loss:.3f}", acc=f"{acc:.3f}")
    log_row(
        run.metrics,
        episode=state.episode,
        loss=loss,
        train_acc=acc,
        lr=run.optimizer.param_groups[0]["lr"],
        time=state.seconds(),
    )


def _validate(run: Run, out_of_time: bool) -> None:
    """Rank 0 validates, logs and saves ``last.pt`` (``best.pt`` too when better) while the others
    wait for its verdict (the barrier); a run out of time stops after it."""
    state = run.state
    state.elapsed = state.seconds()
    stop = run.info.is_main and validate(
        run.cfg, run.model, run.val_sampler, run.pipe, state, run.metrics, run.bar, run.out, lambda: _checkpoint(run)
    )
    state.stop = distributed.from_main(stop, run.info) or out_of_time


def _checkpoint(run: Run) -> dict[str, Any]:
    """What ``last.pt`` holds: config, weights, optimizer, every random state and the run state."""
    return {
        "config": run.config,
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": {"lr": run.optimizer.param_groups[0]["lr"]},
        "rng": rng_state(run.samplers, run.pipe),
        "world_size": run.info.world,
        **run.state.to_checkpoint(),
    }


def _save_last(run: Run) -> Path:
    run.state.elapsed = run.state.seconds()
    save_checkpoint(run.out / "last.pt", _checkpoint(run))
    return run.out / "last.pt"


def _finish(run: Run) -> dict[str, Any]:
    """The summary, also written to ``summary.json``, with the curves plotted; every rank returns
    once the run folder is complete."""
    out, state = run.out, run.state
    note = plot_curves(out / "metrics.jsonl", out / "curves.png") if run.info.is_main else None
    summary = {
        "episodes": state.episode,
        "seconds": round(state.seconds(), 2),
        "best_val": state.best_val,
        "stopped_early": state.stop,
        "time_to_target": state.time_to_target,
        "run_dir": str(out),
        "curves": note or "curves.png",
    }
    if run.info.is_main:
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    distributed.barrier(run.info)
    return summary


def _device_type(device: str) -> str:
    if device == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda but no CUDA device is available")
    return "cuda" if device == "cuda" or (device == "auto" and torch.cuda.is_available()) else "cpu"
