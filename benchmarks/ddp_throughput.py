"""DDP training throughput (global episodes/s) with 1, 2, ... processes on the CPU (gloo), same run.

    nice -n 15 python benchmarks/ddp_throughput.py --procs 1,2 --seconds 30 --json

Full training steps (sampler, forward, prototypical loss, backward with DDP's gradient
all-reduce, Adam) on random 28x28 data, 20-way 5-shot 5-query, one episode per process per
step; each process gets cores / processes threads, as torchrun's OMP_NUM_THREADS=1 would on
a machine with one core per process.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import time

import numpy as np
import torch
import torch.multiprocessing as mp

from edgemeta.runtime.preprocess import PreprocessSpec
from edgemeta.train import distributed
from edgemeta.train.backbones import build_backbone
from edgemeta.train.loop import InputPipe
from edgemeta.train.loss import episode_logits, prototypical_loss
from edgemeta.train.sampler import TrainingEpisodeSampler

WAY, SHOT, QUERY = 20, 5, 5


def _worker(rank: int, world: int, port: int, seconds: float, threads: int, result: mp.Queue) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank)
    )
    torch.set_num_threads(threads)
    info = distributed.setup("cpu")
    images = np.random.default_rng(0).integers(0, 256, size=(20000, 28, 28, 1), dtype=np.uint8)
    sampler = TrainingEpisodeSampler(
        images, np.repeat(np.arange(1000), 20), WAY, SHOT, QUERY, 1, "cpu", shard=(info.rank, info.world)
    )
    pipe = InputPipe(PreprocessSpec(), torch.device("cpu"), "none", channels_last=True)
    model = build_backbone("conv4", 1).to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    forward = distributed.wrap(model, info)

    def step() -> None:
        emb = forward(pipe(sampler.sample(), train=True)).view(1, WAY, SHOT + QUERY, -1)
        loss, _ = prototypical_loss(*episode_logits(emb, SHOT))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    distributed.barrier(info)
    steps, t0 = 0, time.perf_counter()
    while distributed.agree_max(time.perf_counter() - t0, info) < seconds:  # all ranks stop together
        for _ in range(5):
            step()
        steps += 5
    elapsed = distributed.agree_max(time.perf_counter() - t0, info)
    if info.is_main:
        result.put(steps * info.world / elapsed)
    distributed.cleanup(info)


def measure(procs: int, seconds: float) -> float:
    """Global episodes/s with ``procs`` processes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = max(1, (os.cpu_count() or 1) // procs)
    queue = mp.get_context("spawn").SimpleQueue()
    mp.spawn(_worker, args=(procs, port, seconds, threads, queue), nprocs=procs, join=True)
    return float(queue.get())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--procs", default="1,2", help="comma-separated process counts")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rates = {int(p): measure(int(p), args.seconds) for p in args.procs.split(",")}
    base = rates[min(rates)]
    report = {
        "task": f"{WAY}-way {SHOT}-shot {QUERY}-query, conv4 28x28, 1 episode/process/step, gloo",
        "cpu_count": os.cpu_count(),
        "load_before": os.getloadavg()[0],
        "episodes_per_s": rates,
        "speedup": {p: r / base for p, r in rates.items()},
    }
    if args.json:
        print(json.dumps(report))
    else:
        for p, r in rates.items():
            print(f"{p} process(es): {r:.2f} episodes/s ({r / base:.2f}x)")


if __name__ == "__main__":
    main()
