"""SIGKILL ``edgemeta train`` at random moments; every time, the run must resume from its last
good checkpoint (issue 8, crash safety of training checkpoints). With ``--signals``: SIGINT and
SIGTERM instead (issue 21), which must save ``last.pt`` at the current episode and exit 130 / 143,
and the run resumed after them must end bit for bit where an uninterrupted run ends.

Each trial starts (or resumes) a tiny CPU training run in a fresh process, waits a random time,
kills it with SIGKILL, then checks that ``last.pt`` and ``best.pt`` load with
``torch.load(weights_only=True)`` and that no temp file is left except one being written. After
the last trial the run is resumed to completion and must finish its episode count.

    python stress/kill_train.py --trials 50 [--work DIR]
    python stress/kill_train.py --signals --trials 6 [--work DIR]
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EPISODES = 2000
# Signal trials: no validation (a save of its own), no timed save, a schedule independent of
# --episodes, and an episode count no trial reaches (the signal always lands inside training).
SIGNAL_OPTIONS = ["--val-every", "1000000", "--checkpoint-minutes", "0", "--lr-step", "20"]
UNENDING = 10**6


def make_toy(folder: Path) -> Path:
    """MNIST-format toy data: 10 classes x 12 images of 16x16 (a bright bar per class)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 12)
    images = rng.integers(0, 150, size=(len(labels), 16, 16)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 + c, 3:13] = 200
    for name, arr in (("toy-images-idx3-ubyte.gz", images), ("toy-labels-idx1-ubyte.gz", labels)):
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
        (folder / name).write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))
    return folder


def train_command(data: Path, run: Path, resume: bool, episodes: int = EPISODES) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "edgemeta",
        "train",
        "--data",
        str(data),
        "--out",
        str(run),
        "--device",
        "cpu",
        "--way",
        "3",
        "--shot",
        "1",
        "--query",
        "2",
        "--episodes",
        str(episodes),
        "--size",
        "16",
        "--val-every",
        "5",
        "--val-episodes",
        "4",
        "--test-way",
        "2",
        "--no-progress",
        "--seed",
        "1",
    ]
    return cmd + (["--resume"] if resume else [])


def check_run(run: Path) -> int:
    """Both checkpoints load (no pickle); returns last.pt's episode."""
    from edgemeta.train.checkpoint import read_checkpoint

    last = read_checkpoint(run / "last.pt")
    read_checkpoint(run / "best.pt")
    # At most one temp per checkpoint: the save a kill interrupted (the next save removes it).
    for name in ("last.pt", "best.pt"):
        temps = list(run.glob(f".{name}.*.tmp"))
        if len(temps) > 1:
            raise AssertionError(f"stray temp files: {temps}")
    return int(last["episode"])


def _mtime(path: Path) -> int:
    return path.stat().st_mtime_ns if path.exists() else 0


def trial(data: Path, run: Path, rng: random.Random, first: bool, episodes: int) -> int:
    before = _mtime(run / "last.pt")
    proc = subprocess.Popen(
        train_command(data, run, resume=not first, episodes=episodes),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Kill only once this process has written a checkpoint of its own, then at a random moment,
    # so kills land anywhere in training, saving included (it saves every 5 episodes).
    deadline = time.time() + 60
    while _mtime(run / "last.pt") == before and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return check_run(run)


def signal_trial(data: Path, run: Path, sig: int, rng: random.Random, first: bool) -> int:
    """Send ``sig`` at a random moment of training: the process must exit 128 + ``sig`` with one
    line naming the episode it saved ``last.pt`` at; returns that episode."""
    before = _mtime(run / "config.json")
    proc = subprocess.Popen(
        train_command(data, run, not first, UNENDING) + SIGNAL_OPTIONS,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while _mtime(run / "config.json") == before and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)  # config.json is written right before the first step
    time.sleep(rng.uniform(0.0, 1.0))
    proc.send_signal(sig)
    err = proc.communicate(timeout=600)[1]
    if proc.returncode != 128 + sig:
        raise AssertionError(f"{signal.Signals(sig).name}: exit {proc.returncode}, expected {128 + sig}: {err[-500:]}")
    line = err.strip().splitlines()[-1]
    said = re.fullmatch(
        rf"interrupted by {signal.Signals(sig).name} at episode (\d+); saved (.+); continue with: "
        rf"edgemeta train --out (.+) --resume",
        line,
    )
    if not said or Path(said[2]) != run / "last.pt" or Path(said[3]) != run:
        raise AssertionError(f"unexpected last line: {line!r}")
    from edgemeta.train.checkpoint import read_checkpoint

    saved = int(read_checkpoint(run / "last.pt")["episode"])
    if saved != int(said[1]):
        raise AssertionError(f"last.pt holds episode {saved}, the process said {said[1]}")
    return saved


def run_signal_trials(trials: int, work: Path, seed: int = 0) -> dict:
    """SIGINT and SIGTERM in turn, each into a fresh or resumed process; then the run is resumed to
    a few episodes past the last signal and compared with one uninterrupted run to that episode."""
    import torch

    from edgemeta.train.checkpoint import read_checkpoint

    rng, data, run = random.Random(seed), make_toy(work), work / "signalled"
    sigs = [(signal.SIGINT, signal.SIGTERM)[i % 2] for i in range(trials)]
    at = [signal_trial(data, run, sig, rng, first=(i == 0)) for i, sig in enumerate(sigs)]
    if any(b < a for a, b in zip(at, at[1:])):
        raise AssertionError(f"a resume went backwards: {at}")
    final = at[-1] + 7
    for cmd in (train_command(data, run, True, final), train_command(data, work / "straight", False, final)):
        done = subprocess.run(cmd + SIGNAL_OPTIONS, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise AssertionError(f"{cmd}: {done.stderr[-500:]}")
    a, b = read_checkpoint(run / "last.pt"), read_checkpoint(work / "straight" / "last.pt")
    differ = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    if a["episode"] != b["episode"] or differ or metrics_rows(run) != metrics_rows(work / "straight"):
        raise AssertionError(
            f"resumed run != uninterrupted run (episodes {a['episode']}/{b['episode']}, tensors that differ: {differ})"
        )
    return {"signals": [signal.Signals(s).name for s in sigs], "episodes_at_signals": at, "final_episode": final}


def metrics_rows(run: Path) -> list[dict]:
    """``run``'s metrics.jsonl rows without the wall-clock column."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


def run_trials(trials: int, work: Path, seed: int = 0, episodes: int = EPISODES) -> dict:
    rng = random.Random(seed)
    data = make_toy(work)
    run = work / "run"
    at_kills = [trial(data, run, rng, first=(i == 0), episodes=episodes) for i in range(trials)]
    done = subprocess.run(
        train_command(data, run, resume=True, episodes=episodes), capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0:
        raise AssertionError(f"resume after the kills failed: {done.stderr[-500:]}")
    final = check_run(run)
    if final < episodes:
        raise AssertionError(f"resumed run ended at episode {final} < {episodes}")
    if any(b < a for a, b in zip(at_kills, at_kills[1:])):
        raise AssertionError(f"a resume went backwards: {at_kills}")
    return {"trials": trials, "episodes_at_kills": at_kills, "final_episode": final}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--signals", action="store_true", help="SIGINT/SIGTERM in turn instead of SIGKILL")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.signals:
            result = run_signal_trials(args.trials, args.work or Path(tmp), args.seed)
            print(
                f"{' '.join(result['signals'])}: exits 130/143, last.pt at the episodes said "
                f"{result['episodes_at_signals']}; resumed to episode {result['final_episode']}: the same "
                "weights and metrics rows as an uninterrupted run"
            )
            return
        result = run_trials(args.trials, args.work or Path(tmp), args.seed)
    print(
        f"{result['trials']} kills, every checkpoint loadable, resumed to episode {result['final_episode']}; "
        f"episodes at the kills: {result['episodes_at_kills']}"
    )


if __name__ == "__main__":
    main()
