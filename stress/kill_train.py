"""SIGKILL ``edgemeta train`` at random moments; every time, the run must resume from its last
good checkpoint (issue 8, crash safety of training checkpoints).

Each trial starts (or resumes) a tiny CPU training run in a fresh process, waits a random time,
kills it with SIGKILL, then checks that ``last.pt`` and ``best.pt`` load with
``torch.load(weights_only=True)`` and that no temp file is left except one being written. After
the last trial the run is resumed to completion and must finish its episode count.

    python stress/kill_train.py --trials 50 [--work DIR]
"""

from __future__ import annotations

import argparse
import gzip
import random
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

EPISODES = 2000


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
    cmd = [sys.executable, "-m", "edgemeta", "train", "--data", str(data), "--out", str(run), "--device", "cpu",
           "--way", "3", "--shot", "1", "--query", "2", "--episodes", str(episodes), "--size", "16",
           "--val-every", "5", "--val-episodes", "4", "--test-way", "2", "--no-progress", "--seed", "1"]
    return cmd + (["--resume"] if resume else [])


def check_run(run: Path) -> int:
    """Both checkpoints load (no pickle); returns last.pt's episode."""
    from edgemeta.train.checkpoint import load_checkpoint

    last = load_checkpoint(run / "last.pt")
    load_checkpoint(run / "best.pt")
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
    proc = subprocess.Popen(train_command(data, run, resume=not first, episodes=episodes), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    # Kill only once this process has written a checkpoint of its own, then at a random moment,
    # so kills land anywhere in training, saving included (it saves every 5 episodes).
    deadline = time.time() + 60
    while _mtime(run / "last.pt") == before and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    time.sleep(rng.uniform(0.0, 0.5))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return check_run(run)


def run_trials(trials: int, work: Path, seed: int = 0, episodes: int = EPISODES) -> dict:
    rng = random.Random(seed)
    data = make_toy(work)
    run = work / "run"
    at_kills = [trial(data, run, rng, first=(i == 0), episodes=episodes) for i in range(trials)]
    done = subprocess.run(train_command(data, run, resume=True, episodes=episodes), capture_output=True, text=True,
                          timeout=600)
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
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = run_trials(args.trials, args.work or Path(tmp))
    print(f"{result['trials']} kills, every checkpoint loadable, resumed to episode {result['final_episode']}; "
          f"episodes at the kills: {result['episodes_at_kills']}")


if __name__ == "__main__":
    main()
