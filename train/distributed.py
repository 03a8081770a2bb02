"""Distributed plumbing for ``torchrun ... -m edgemeta train`` (DistributedDataParallel).

Without torchrun's environment (``WORLD_SIZE`` unset or 1) every function here is a no-op
and the training loop runs exactly as a single process.

Choices (see ``train/README_distributed.md``):

- Episodes: every rank draws the same global batch of episode *indices* from one shared
  sampler stream (same seed everywhere) and keeps its own slice (``TrainingEpisodeSampler(shard=...)``),
  so ranks train on distinct episodes, the episodes of ``R`` ranks x ``E`` equal those of one
  process x ``R * E``, and resuming with another world size only needs the one sampler state.
  Drawing indices costs a few tiny tensor ops; only the rank's own images are gathered.
- BatchNorm: plain per-rank statistics (no SyncBatchNorm), ``broadcast_buffers=False``.
- Collectives on CPU scalars go through gloo even on GPUs (``cpu:gloo,cuda:nccl``), so
  agreeing on the clock or on stopping never stalls the CUDA stream.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False  # this module created the process group, so it destroys it

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_type: str) -> DistInfo:
    """Join the torchrun job described by the environment (or stay a single process).

    device_type "cuda": NCCL for tensors on the GPU (one GPU per local rank), gloo for CPU
    tensors; "cpu": gloo.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if dist.is_initialized():  # the caller set it up; leave it to them
        return DistInfo(dist.get_world_size(), dist.get_rank(), local_rank, owns_group=False)
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
        dist.init_process_group(backend="cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group(backend="gloo")
    return DistInfo(world, rank, local_rank, owns_group=True)


def device_for(device_type: str, info: DistInfo) -> torch.device:
    """The device of this rank: ``cuda:LOCAL_RANK`` under torchrun on GPUs."""
    if device_type == "cuda" and info.enabled:
        return torch.device("cuda", info.local_rank)
    return torch.device(device_type)


def is_main(info: DistInfo) -> bool:
    return info.is_main


def wrap(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """DDP around ``model`` (gradients averaged over ranks), or ``model`` itself alone.

    No buffer sync in forward: BatchNorm running statistics stay per rank -- one collective
    fewer per step; only rank 0's are saved and validated with, an estimate of the same
    statistics since every rank's episodes come from the same distribution.
    """
    if not info.enabled:
        return model
    ddp = torch.nn.parallel.DistributedDataParallel
    # Newer torch renames the switch (buffers are still synced once at construction).
    no_sync = (
        "forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters else "broadcast_buffers"
    )
    device_ids = [info.local_rank] if next(model.parameters()).is_cuda else None
    return ddp(model, device_ids=device_ids, **{no_sync: False})


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_mean(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``t`` over ranks (a new tensor); ``t`` itself alone."""
    if not info.enabled:
        return t
    t = t.clone()
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t / info.world


def agree_max(value: float, info: DistInfo) -> float:
    """The largest ``value`` of all ranks: one clock for time-based decisions, so that every
    rank sets the same learning rate and stops at the same step."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def from_main(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank (picklable; tensors come back on the CPU)."""
    if not info.enabled:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
    return box[0]


def rank_seed(seed: int, rank: int, episode: int) -> int:
    """A seed for rank-local randomness (augmentation), from (seed, rank, episode) alone:
    rank 0 of a fresh run keeps ``seed`` so that one process runs exactly as before."""
    if rank == 0 and episode == 0:
        return seed
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, rank, episode]).generate_state(1)[0])
