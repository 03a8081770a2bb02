"""Crash safety of prototype stores: SIGKILL a process at random points while it saves.

A forked child saves versions v, v+1, v+2, ... of one store through ``FewShotClassifier.save``
and reports each finished version on a pipe. The parent kills it after a random delay, then
loads the store and checks that it is exactly one complete version: the last one the child
reported, or the one after it (renamed but not yet reported). Versions alternate between 3
and 7 classes and every sum and count encodes the version, so a mix of old and new is caught.
Temp files of killed writers must not pile up: the next successful save removes them.

    python stress/kill_store_save.py --trials 1000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from edgemeta.runtime import EmbeddingModel, FewShotClassifier  # noqa: E402

DIM = 1024  # wide rows: a save takes long enough that kills land inside it


def version_state(v: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Labels, sums float64 [C, DIM] and counts int64 [C] of version v (odd: 3 classes, even: 7)."""
    n = 3 if v % 2 else 7
    labels = [f"v{v % 2}-class{c}" for c in range(n)]
    counts = np.array([v + c + 1 for c in range(n)], dtype=np.int64)
    sums = (np.arange(DIM, dtype=np.float64)[None, :] + v * 1000.0 + np.arange(n)[:, None] * 7.0) * counts[:, None]
    return labels, sums, counts


def which_version(clf: FewShotClassifier) -> int:
    """The version a loaded store holds; raises AssertionError when it is no single version."""
    labels, _ = clf.prototypes()
    counts = clf.counts()
    v = counts[labels[0]] - int(labels[0].rsplit("class", 1)[1]) - 1
    exp_labels, exp_sums, exp_counts = version_state(v)
    assert labels == exp_labels, f"labels {labels} are not those of version {v}"
    assert [counts[lab] for lab in labels] == exp_counts.tolist(), f"counts {counts} are not those of version {v}"
    assert np.array_equal(clf._sums[: len(labels)], exp_sums), f"sums are not those of version {v}"
    return v


def child(model: EmbeddingModel, store: Path, start: int, wfd: int) -> None:
    os.write(wfd, b"go\n")
    v = start
    while True:
        clf = FewShotClassifier(model)
        labels, sums, counts = version_state(v)
        for lab, s, c in zip(labels, sums, counts):
            clf.add_embeddings(lab, s, int(c))
        clf.save(store)
        os.write(wfd, f"{v}\n".encode())
        v += 1


@dataclass
class Stats:
    trials: int = 0
    killed_mid_write: int = 0  # a temp file was left behind: the kill hit between create and rename
    saw_new_unreported: int = 0  # the store held a version the child had renamed but not reported
    saves_completed: int = 0
    max_stray_temps: int = 0
    failures: list[str] = field(default_factory=list)


def temps(store: Path) -> list[Path]:
    return list(store.parent.glob(f".{store.name}.*.tmp"))


def one_trial(model: EmbeddingModel, store: Path, version: int, delay: float, stats: Stats) -> int:
    """Run one child, kill it after ``delay`` seconds, check the store; returns the version on disk."""
    strays_before = len(temps(store))
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: never returns
        os.close(rfd)
        try:
            child(model, store, version + 1, wfd)
        finally:
            os._exit(1)
    os.close(wfd)
    os.read(rfd, 3)  # wait for "go"
    time.sleep(delay)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    reported = _drain(rfd)
    stats.trials += 1
    stats.saves_completed += len(reported)
    last_done = reported[-1] if reported else version
    try:
        got = which_version(FewShotClassifier.load(store, model))
        assert got in (last_done, last_done + 1), f"store holds version {got}, expected {last_done} or {last_done + 1}"
        stats.saw_new_unreported += got == last_done + 1
    except Exception as e:  # a failed check is recorded, the run goes on
        stats.failures.append(f"trial {stats.trials}: {type(e).__name__}: {e}")
        got = version
    strays = len(temps(store))
    stats.killed_mid_write += strays > (0 if reported else strays_before)
    stats.max_stray_temps = max(stats.max_stray_temps, strays)
    limit = 1 if reported else strays_before + 1
    if strays > limit:
        stats.failures.append(f"trial {stats.trials}: {strays} stray temp files (at most {limit} allowed)")
    return got


def _drain(rfd: int) -> list[int]:
    chunks = []
    while chunk := os.read(rfd, 65536):
        chunks.append(chunk)
    os.close(rfd)
    return [int(x) for x in b"".join(chunks).split() if x != b"go"]


def save_seconds(model: EmbeddingModel, store: Path, repeats: int = 20) -> float:
    clf = FewShotClassifier(model)
    labels, sums, counts = version_state(0)
    for lab, s, c in zip(labels, sums, counts):
        clf.add_embeddings(lab, s, int(c))
    t0 = time.perf_counter()
    for _ in range(repeats):
        clf.save(store)
    return (time.perf_counter() - t0) / repeats


def run(folder: Path, trials: int, seed: int = 0) -> tuple[Stats, float]:
    """Kill ``trials`` saving children; returns the statistics and the mean seconds per save."""
    from tiny_models import linear_model, metadata

    weights = np.zeros((64, DIM), dtype=np.float32)
    model = EmbeddingModel(linear_model(folder / "m.onnx", weights=weights, meta=metadata(DIM)))
    store = folder / "store.npz"
    per_save = save_seconds(model, store)
    rng = random.Random(seed)
    stats = Stats()
    version = which_version(FewShotClassifier.load(store, model))
    for _ in range(trials):
        version = one_trial(model, store, version, rng.uniform(0.0, 4.0 * per_save), stats)
    try:
        FewShotClassifier.load(store, model).save(store)  # a clean save leaves no temp files at all
    except Exception as e:
        stats.failures.append(f"final load and save: {type(e).__name__}: {e}")
    if temps(store):
        stats.failures.append(f"after a clean save, temp files remain: {temps(store)}")
    return stats, per_save


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="folder for the store (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.dir or Path(tmp)
        t0 = time.perf_counter()
        stats, per_save = run(folder, args.trials, args.seed)
        doc = {
            "trials": stats.trials,
            "killed_mid_write": stats.killed_mid_write,
            "store_held_new_unreported_version": stats.saw_new_unreported,
            "saves_completed": stats.saves_completed,
            "max_stray_temp_files": stats.max_stray_temps,
            "seconds_per_save": round(per_save, 5),
            "wall_seconds": round(time.perf_counter() - t0, 1),
            "failures": len(stats.failures),
            "first_failures": stats.failures[:10],
        }
    print(json.dumps(doc, indent=2))
    return 1 if stats.failures else 0


if __name__ == "__main__":
    sys.exit(main())
