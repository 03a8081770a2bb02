"""Concurrency: many threads enroll, remove, predict, classify and save on ONE classifier.

Every prediction must be explainable by a legal state, so torn reads are caught. Label i owns
two embedding dimensions, a_i and b_i (the tiny model is the identity on 16x16 images). Only
its owner thread ever enrolls or removes it. Every shot has the value A(incarnation) at a_i;
the first shot of an incarnation also has 1 at b_i. So a prototype is (A, 1/n): its a-value
names the incarnation, its b-value the number of shots n. Three queries per predict (zero,
all a-dims, all b-dims) recover both values of every prototype from the returned distances. A
state that mixes sums and counts of different moments, or rows of different labels, gives an
a-value that is no legal A or a b-value that is no 1/n. On top: owners read their own writes
exactly, an observer never sees a label's shot count go back within one incarnation, the three
rows of one call share one set of labels, and the saved store holds only legal states.

    python stress/concurrency.py --threads 8 --ops 100000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from edgemeta.runtime import EdgemetaError, EmbeddingModel, FewShotClassifier  # noqa: E402
from edgemeta.runtime.store import read_store  # noqa: E402

SIZE = 16
LABELS = SIZE * SIZE // 2
MAX_SHOTS = 12
A_VALUES = (255, 215, 175, 135, 95)  # pixel value at a_i, per incarnation mod 5
TOL = 1e-3
WEIGHTS = {"enroll": 35, "remove": 4, "predict": 35, "classify": 20, "read": 5, "save": 1}


def make_model(folder: Path) -> EmbeddingModel:
    from tiny_models import linear_model, metadata

    meta = metadata(SIZE * SIZE, size=SIZE)
    meta["preprocess"].update(polarity="none", auto_polarity=False)
    return EmbeddingModel(linear_model(folder / "identity.onnx", size=SIZE, meta=meta), threads=1)


def shots(label: int, incarnation: int, first: bool, m: int) -> np.ndarray:
    """uint8 [m, SIZE, SIZE]: m shots of ``label``; the first of an incarnation marks b_i."""
    out = np.zeros((m, SIZE * SIZE), dtype=np.uint8)
    out[:, 2 * label] = A_VALUES[incarnation % len(A_VALUES)]
    if first:
        out[0, 2 * label + 1] = 255
    return out.reshape(m, SIZE, SIZE)


def queries() -> np.ndarray:
    q = np.zeros((3, SIZE * SIZE), dtype=np.uint8)
    q[1, 0::2] = 255
    q[2, 1::2] = 255
    return q.reshape(3, SIZE, SIZE)


def decode(a: float, b: float) -> tuple[int, int]:
    """(incarnation mod 5, shots) of a prototype (a, b); AssertionError when no legal state has it."""
    inc = min(range(len(A_VALUES)), key=lambda k: abs(A_VALUES[k] / 255 - a))
    assert abs(A_VALUES[inc] / 255 - a) < TOL, f"a-value {a:.6f} is no legal incarnation"
    n = round(1.0 / b) if b > 0 else 0
    assert 1 <= n <= MAX_SHOTS and abs(1.0 / n - b) < TOL, f"b-value {b:.6f} is no legal 1/n"
    return inc, n


def states_from_predictions(rows: list) -> dict[str, tuple[int, int]]:
    """label -> (incarnation mod 5, shots) from the three query rows of one predict call."""
    d = [{p.label: p.distance for p in row} for row in rows]
    assert d[0].keys() == d[1].keys() == d[2].keys(), "rows of one call disagree on the labels"
    out = {}
    for lab in d[0]:
        a = (LABELS + d[0][lab] - d[1][lab]) / 2  # ||qA||^2 = LABELS
        b = (LABELS + d[0][lab] - d[2][lab]) / 2
        assert abs(a * a + b * b - d[0][lab]) < 10 * TOL, f"{lab}: mass outside its own dimensions"
        out[lab] = decode(a, b)
    return out


@dataclass
class Worker:
    """One thread: owns labels ``mine``; knows their exact state."""

    index: int
    mine: list[int]
    ops: int
    rng: random.Random
    state: dict[int, tuple[int, int]] = field(default_factory=dict)  # label -> (incarnation, shots)
    incarnations: dict[int, int] = field(default_factory=dict)
    seen: dict[str, tuple[int, int]] = field(default_factory=dict)  # label -> last observed state
    done: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def name(label: int) -> str:
    return f"L{label:03d}"


def do_enroll(clf: FewShotClassifier, w: Worker) -> None:
    lab = w.rng.choice(w.mine)
    inc, n = w.state.get(lab, (w.incarnations.get(lab, 0), 0))
    m = w.rng.randint(1, 3)
    if n + m > MAX_SHOTS:
        return do_remove(clf, w, lab)
    got = clf.enroll(name(lab), shots(lab, inc, n == 0, m))
    assert got == n + m, f"enroll returned {got} shots, expected {n + m}"
    w.state[lab] = (inc, n + m)


def do_remove(clf: FewShotClassifier, w: Worker, lab: int | None = None) -> None:
    lab = w.rng.choice(w.mine) if lab is None else lab
    if lab not in w.state:
        try:
            clf.remove(name(lab))
        except EdgemetaError:
            return
        raise AssertionError(f"removing absent {name(lab)} did not fail")
    clf.remove(name(lab))
    inc, _ = w.state.pop(lab)
    w.incarnations[lab] = inc + 1


def do_predict(clf: FewShotClassifier, w: Worker) -> None:
    try:
        rows = clf.predict(queries(), top_k=LABELS)
    except EdgemetaError as e:  # legal only while nothing is enrolled
        assert "no classes" in str(e), str(e)
        return
    observed = states_from_predictions(rows)
    for lab in w.mine:  # read-your-writes: own labels exactly as last left
        want = w.state.get(lab)
        got = observed.get(name(lab))
        assert (got is None) == (want is None), f"{name(lab)}: owner expects {want}, saw {got}"
        assert want is None or got == (want[0] % len(A_VALUES), want[1]), (
            f"{name(lab)}: owner expects {want}, saw {got}"
        )
    for lab, st in observed.items():
        before = w.seen.get(lab)
        assert before is None or before[0] != st[0] or st[1] >= before[1], f"{lab}: went back from {before} to {st}"
        w.seen[lab] = st


def do_classify(clf: FewShotClassifier, w: Worker) -> None:
    try:
        out = clf.classify(queries()[1:2])
    except EdgemetaError as e:
        assert "no classes" in str(e), str(e)
        return
    assert out[0] is None or out[0].startswith("L"), f"classify returned {out}"


def do_read(clf: FewShotClassifier, w: Worker) -> None:
    counts = clf.counts()
    for lab in w.mine:
        want = w.state.get(lab)
        assert counts.get(name(lab)) == (None if want is None else want[1]), f"counts() disagrees for {name(lab)}"
    assert set(clf.labels) >= {name(lab) for lab in w.state}


def worker_loop(clf: FewShotClassifier, w: Worker, store: Path) -> None:
    ops = {
        "enroll": do_enroll,
        "remove": do_remove,
        "predict": do_predict,
        "classify": do_classify,
        "read": do_read,
        "save": lambda c, _w: c.save(store),
    }
    names, weights = list(WEIGHTS), list(WEIGHTS.values())
    for _ in range(w.ops):
        op = w.rng.choices(names, weights)[0]
        try:
            ops[op](clf, w)
        except Exception as e:  # recorded and counted; the check fails at the end
            w.errors.append(f"thread {w.index} {op}: {type(e).__name__}: {e}")
            if len(w.errors) > 20:
                return
        w.done[op] = w.done.get(op, 0) + 1


def check_store(store: Path) -> list[str]:
    """The saved store holds only legal states (a save is a snapshot of some moment)."""
    if not store.exists():
        return []
    try:
        c = read_store(store)
    except EdgemetaError as e:
        return [f"saved store: {e}"]
    errors = []
    for lab, s, n in zip(c.labels, c.sums, c.counts):
        i = int(lab[1:])
        try:
            _, shots_ = decode(s[2 * i] / n, s[2 * i + 1] / n)
            assert shots_ == n, f"{lab}: b-value says {shots_} shots, count says {n}"
        except AssertionError as e:
            errors.append(f"saved store: {e}")
    return errors


def run(folder: Path, threads: int, total_ops: int, seed: int = 0, timeout: float = 600.0) -> dict:
    clf = FewShotClassifier(make_model(folder))
    store = folder / "store.npz"
    workers = [
        Worker(t, list(range(t, LABELS, threads)), total_ops // threads, random.Random(seed * 1000 + t))
        for t in range(threads)
    ]
    pool = [threading.Thread(target=worker_loop, args=(clf, w, store), daemon=True) for w in workers]
    t0 = time.perf_counter()
    for t in pool:
        t.start()
    deadline = t0 + timeout
    for t in pool:
        t.join(max(0.0, deadline - time.perf_counter()))
    hung = sum(t.is_alive() for t in pool)
    errors = [e for w in workers for e in w.errors]
    if hung:
        errors.append(f"{hung} thread(s) still running after {timeout} s: deadlock or livelock")
    else:
        final = {name(lab): st[1] for w in workers for lab, st in w.state.items()}
        if clf.counts() != final:
            errors.append("final classifier state differs from the owners' serial histories")
        clf.save(store)
        errors += check_store(store)
    done: dict[str, int] = {}
    for w in workers:
        for op, n in w.done.items():
            done[op] = done.get(op, 0) + n
    return {
        "threads": threads,
        "operations": sum(done.values()),
        "by_operation": done,
        "seconds": round(time.perf_counter() - t0, 1),
        "hung_threads": hung,
        "errors": len(errors),
        "first_errors": errors[:10],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--ops", type=int, default=100_000, help="operations in all threads together")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=1200.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        doc = run(Path(tmp), args.threads, args.ops, args.seed, args.timeout)
    print(json.dumps(doc, indent=2))
    return 1 if doc["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
