"""DDP training: 2 gloo processes on the CPU against one process, and resume across world sizes.

One ``torch.multiprocessing`` spawn runs every 2-rank job of the module (process start-up
dominates on a loaded CPU); one ``torchrun`` run checks the real command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_torch, write_toy_mnist

pytestmark = needs_torch

RUN_FILES = {"best.pt", "last.pt", "config.json", "metrics.jsonl", "summary.json", "curves.png"}


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    return write_toy_mnist(tmp_path_factory.mktemp("toy"))


def _cfg(toy: Path, out: Path, **kw) -> dict:
    base = dict(
        data=str(toy),
        out=str(out),
        way=4,
        shot=[1, 2],
        query=3,
        episodes=16,
        episodes_per_step=1,
        size=16,
        val_every=8,
        val_episodes=10,
        test_way=2,
        test_shot=1,
        test_query=3,
        log_every=1,
        augment="full",
        seed=5,
        lr_step=4,
    )
    return {**base, **kw}


def _strip_bn(model):
    """Every BatchNorm replaced by Identity: the only thing left that differs between R ranks x E
    episodes and 1 process x R*E episodes is floating-point summation order."""
    from torch import nn

    for name, child in list(model.named_children()):
        setattr(model, name, nn.Identity()) if isinstance(child, nn.BatchNorm2d) else _strip_bn(child)
    return model


def _factory(built: list, no_bn: bool):
    from edgemeta.train.backbones import build_backbone

    def make(*args, **kwargs):
        model = build_backbone(*args, **kwargs)
        built.append(_strip_bn(model) if no_bn else model)
        return built[-1]

    return make


def _worker(rank: int, world: int, port: int, jobs: list[dict]) -> None:
    import torch
    import torch.distributed as dist

    import edgemeta.train.loop as loop
    from edgemeta.runtime.errors import Interrupted

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        WORLD_SIZE=str(world),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        GLOO_SOCKET_IFNAME="lo",
    )
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # once for all jobs; train() then joins this group
    for job in jobs:
        built: list = []
        loop.build_backbone = _factory(built, job["no_bn"])
        signal_rank, signal_step = job.get("signal", (-1, 0))  # SIGINT to this rank inside this step
        try:
            with _signal_at(loop, signal_step if rank == signal_rank else 0):
                loop.train(loop.TrainConfig(**job["cfg"]), progress=False)
        except Interrupted as e:
            Path(f"{job['cfg']['out']}.rank{rank}.exit").write_text(f"{e.exit_code} {e.episode}")
        torch.save({k: v.detach().clone() for k, v in built[0].state_dict().items()}, f"{job['cfg']['out']}.rank{rank}")
    dist.destroy_process_group()


@contextlib.contextmanager
def _signal_at(loop, step: int):
    """A real SIGINT to this process inside optimizer step ``step`` (0: none)."""
    real, count = loop.set_learning_rate, [0]

    def hooked(optimizer, lr):
        count[0] += 1
        if count[0] == step:
            os.kill(os.getpid(), signal.SIGINT)
        real(optimizer, lr)

    loop.set_learning_rate = hooked
    try:
        yield
    finally:
        loop.set_learning_rate = real


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(jobs: list[dict], timeout: float = 90.0) -> None:
    import torch.multiprocessing as mp

    ctx = mp.spawn(_worker, args=(2, _free_port(), jobs), nprocs=2, join=False)
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=1):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("2-process training did not finish in time")


@pytest.fixture(scope="module")
def runs(toy, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    _spawn(
        [
            {"cfg": _cfg(toy, root / "ddp"), "no_bn": False},
            {"cfg": _cfg(toy, root / "plain", augment="none", episodes=12, val_every=12), "no_bn": True},
            {"cfg": _cfg(toy, root / "half", augment="none", episodes=6, val_every=6), "no_bn": True},
            {"cfg": _cfg(toy, root / "signal"), "no_bn": False, "signal": (1, 3)},
        ]
    )
    return root


def _single(toy, out, monkeypatch, no_bn: bool, resume: bool = False, **kw) -> dict:
    import edgemeta.train.loop as loop

    built: list = []
    monkeypatch.setattr(loop, "build_backbone", _factory(built, no_bn))
    loop.train(loop.TrainConfig(**_cfg(toy, out, **kw)), resume=resume, progress=False)
    return built[0].state_dict()


def _losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r]


def test_two_ranks_one_set_of_outputs_identical_weights(runs):
    import torch

    from edgemeta.train.checkpoint import read_checkpoint

    assert {p.name for p in (runs / "ddp").iterdir()} == RUN_FILES  # no per-rank copies, no temp files
    rows = [json.loads(x) for x in (runs / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["episode"] for r in rows if "loss" in r] == list(range(2, 17, 2))  # global episodes, once each
    assert [r["episode"] for r in rows if "val_acc" in r] == [8, 16]
    ckpt = read_checkpoint(runs / "ddp" / "last.pt")
    assert ckpt["episode"] == 16 and ckpt["step"] == 8 and ckpt["world_size"] == 2
    w0, w1 = torch.load(f"{runs}/ddp.rank0"), torch.load(f"{runs}/ddp.rank1")
    for k, v in ckpt["model"].items():
        if "running" not in k and "num_batches" not in k:  # BN statistics are per rank by design
            assert torch.equal(w0[k], w1[k]) and torch.equal(w0[k], v), k
    # 16 episodes at lr_step 4 (global episodes): the rate was halved 3 times, not 7.
    assert ckpt["scheduler"]["lr"] == pytest.approx(1e-3 * 0.5**3)


def test_a_signal_to_one_rank_stops_all_after_the_same_step(runs):
    """SIGINT to rank 1 alone inside step 3: both ranks stop after step 3 (global episode 6) and
    exit 130, rank 0 alone writes last.pt, nothing is logged past it."""
    from edgemeta.train.checkpoint import read_checkpoint

    assert [(runs / f"signal.rank{r}.exit").read_text() for r in (0, 1)] == ["130 6", "130 6"]
    ckpt = read_checkpoint(runs / "signal" / "last.pt")
    assert ckpt["episode"] == 6 and ckpt["step"] == 3 and ckpt["world_size"] == 2
    assert [r["episode"] for r in map(json.loads, (runs / "signal" / "metrics.jsonl").read_text().splitlines())] == [
        2,
        4,
        6,
    ]
    assert {p.name for p in (runs / "signal").iterdir()} == {"last.pt", "config.json", "metrics.jsonl"}


def test_two_ranks_match_one_process(runs, toy, tmp_path, monkeypatch):
    """2 ranks x 1 episode == 1 process x 2 episodes per step: the same episodes (shared sampler
    stream, one slice per rank) and, without BatchNorm, the same loss; only summation order
    differs (DDP's mean of two gradients against one backward over both), ~1e-7 relative per
    step, which Adam carries into the weights at about that size for these few steps."""
    import torch

    ref = _single(
        toy, tmp_path / "one", monkeypatch, no_bn=True, augment="none", episodes=12, val_every=12, episodes_per_step=2
    )
    np.testing.assert_allclose(_losses(runs / "plain"), _losses(tmp_path / "one"), rtol=1e-4, atol=1e-5)
    ddp = torch.load(f"{runs}/plain.rank0")
    for k in ref:
        torch.testing.assert_close(ddp[k], ref[k], rtol=1e-4, atol=1e-5)


def test_resume_two_ranks_on_one_process(runs, toy, tmp_path, monkeypatch):
    """6 episodes on 2 ranks, then 6 more on 1 process with 2 episodes per step (the same global
    batch): the same run as 12 episodes on 2 ranks."""
    import torch

    from edgemeta.train.checkpoint import read_checkpoint

    shutil.copytree(runs / "half", tmp_path / "half")
    resumed = _single(toy, tmp_path / "half", monkeypatch, no_bn=True, resume=True, episodes=12, episodes_per_step=2)
    ckpt = read_checkpoint(tmp_path / "half" / "last.pt")
    assert ckpt["episode"] == 12 and ckpt["world_size"] == 1
    straight = torch.load(f"{runs}/plain.rank0")
    for k in straight:
        torch.testing.assert_close(resumed[k], straight[k], rtol=1e-4, atol=1e-5)
    # With BatchNorm and augmentation, keeping the saved per-rank batch (1): trains on to the end.
    shutil.copytree(runs / "ddp", tmp_path / "bn")
    _single(toy, tmp_path / "bn", monkeypatch, no_bn=False, resume=True, episodes=20, episodes_per_step=0)
    ckpt = read_checkpoint(tmp_path / "bn" / "last.pt")
    assert ckpt["episode"] == 20 and ckpt["step"] == 12 and np.isfinite(_losses(tmp_path / "bn")[-1])


def test_torchrun_command_line(toy, tmp_path):
    out = tmp_path / "run"
    argv = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        "-m",
        "edgemeta",
        "train",
        "--data",
        str(toy),
        "--out",
        str(out),
        "--size",
        "16",
        "--episodes",
        "8",
        "--way",
        "3",
        "--shot",
        "1",
        "--query",
        "2",
        "--val-every",
        "4",
        "--val-episodes",
        "6",
        "--test-way",
        "2",
        "--augment",
        "none",
        "--no-progress",
        "--json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [json.loads(x) for x in result.stdout.splitlines() if x.startswith("{")]
    assert len(summaries) == 1 and summaries[0]["episodes"] == 8  # rank 0 alone reports
    assert {p.name for p in out.iterdir()} == RUN_FILES
