"""Concurrent CLI processes on ONE store: every completed enroll and remove must be in the end.

Waves of ``edgemeta enroll``, ``remove`` and ``classify`` processes (2, 10, 40 at once by
default, repeated until ``--enrolls`` enroll processes ran) all work on one store made with a
tiny model. Each enroll adds 2 shots, either to one of a few shared labels (many processes
add to the same class at once, so a lost update shows in its shot count) or to a label of its
own; each remove takes a label whose enroll completed in an earlier wave. Then a wave whose
writers are SIGKILLed at random moments: a process that exited 0 must have its change in the
final store, a killed one may or may not. After every wave the store must load; at the end
one more enroll must get the lock at once (no stale lock) and leave no temp files. Before the
kill wave starts, one process takes the lock and holds it until it is killed mid-wave.

    python stress/store_concurrency.py --enrolls 200 --waves 2,10,40 --kill-wave 40
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from edgemeta.runtime.store import read_store  # noqa: E402

SHOTS = 2
SHARED = ("shared0", "shared1", "shared2")
HANG_SECONDS = 300.0
WEIGHTS = {"enroll": 70, "remove": 15, "classify": 15}
# Takes the store's write lock and keeps it until killed: the writers queued behind it must
# go on once the kernel drops the dead holder's lock.
HOLD = (
    "import sys, time\nfrom edgemeta.runtime.store_lock import store_lock\n"
    "with store_lock(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(3600)"
)


@dataclass
class Proc:
    kind: str  # enroll | remove | classify
    label: str | None
    popen: subprocess.Popen
    started: float
    rc: int | None = None
    seconds: float = 0.0
    stderr: str = ""
    stdout: str = ""


@dataclass
class Ledger:
    """What the final store may hold: shots per shared label and the fate of every own label."""

    shared_done: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SHARED, 0))
    shared_maybe: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SHARED, 0))
    enrolled: dict[str, str] = field(default_factory=dict)  # own label -> done | killed | error
    removed: dict[str, str] = field(default_factory=dict)  # own label -> done | killed | error
    counts: dict[str, int] = field(default_factory=lambda: {"completed": 0, "killed": 0, "errors": 0, "classify_ok": 0})
    first_errors: list[str] = field(default_factory=list)

    def removable(self) -> list[str]:
        return [lab for lab, fate in self.enrolled.items() if fate == "done" and lab not in self.removed]


def setup(folder: Path) -> dict[str, Path]:
    """A tiny model, two images per class and a store seeded with the shared labels."""
    from PIL import Image
    from tiny_models import class_batch, linear_model

    from edgemeta.runtime import EmbeddingModel, FewShotClassifier

    model = linear_model(folder / "m.onnx")
    images = []
    for k in range(4):
        for i, img in enumerate(class_batch(k, SHOTS)):
            images.append(folder / f"c{k}_{i}.png")
            Image.fromarray(img).save(images[-1])
    clf = FewShotClassifier(EmbeddingModel(model))
    for k, lab in enumerate(SHARED):
        clf.enroll(lab, class_batch(k, 1))
    clf.save(folder / "store.npz")
    return {"model": model, "store": folder / "store.npz", **{f"img{i}": p for i, p in enumerate(images)}}


def command(kind: str, label: str | None, paths: dict[str, Path], rng: random.Random) -> list[str]:
    base = [sys.executable, "-m", "edgemeta", kind, "--store", str(paths["store"])]
    if kind == "remove":
        return base + ["--json", str(label)]
    k = rng.randrange(4)
    images = [str(paths[f"img{SHOTS * k + i}"]) for i in range(SHOTS)]
    tail = ["--json", str(label)] if kind == "enroll" else ["--json"]
    return base[:4] + ["--model", str(paths["model"]), "--threads", "1"] + base[4:] + tail + images


def plan(
    size: int, ledger: Ledger, rng: random.Random, serial: list[int], writers_only: bool = False
) -> list[tuple[str, str | None]]:
    """(kind, label) of each process of one wave; removes take labels no other process touches."""
    removable = ledger.removable()
    rng.shuffle(removable)
    jobs: list[tuple[str, str | None]] = []
    for _ in range(size):
        kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
        if kind == "classify" and writers_only:
            kind = "enroll"
        if kind == "remove" and not removable:
            kind = "enroll"
        if kind == "remove":
            jobs.append((kind, removable.pop()))
        elif kind == "enroll":
            serial[0] += 1
            jobs.append((kind, rng.choice(SHARED) if rng.random() < 0.5 else f"own{serial[0]}"))
        else:
            jobs.append((kind, None))
    return jobs


def run_wave(
    jobs: list[tuple[str, str | None]],
    paths: dict[str, Path],
    rng: random.Random,
    kill_delays: dict[int, float] | None = None,
) -> list[Proc]:
    """Start every process of the wave at once; SIGKILL process i after kill_delays[i] seconds."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        Proc(
            kind,
            label,
            subprocess.Popen(
                command(kind, label, paths, rng), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            ),
            time.monotonic(),
        )
        for kind, label in jobs
    ]
    kills = dict(kill_delays or {})
    hung: set[int] = set()
    while any(p.rc is None for p in procs):
        now = time.monotonic()
        for i, p in enumerate(procs):
            if p.rc is not None:
                continue
            if p.popen.poll() is None and (now - p.started >= kills.get(i, HANG_SECONDS)):
                p.popen.kill()
                hung.update([i] if i not in kills else [])
                kills.pop(i, None)
            elif p.popen.poll() is not None:
                p.stdout, p.stderr = p.popen.communicate()
                p.rc, p.seconds = (999 if i in hung else p.popen.returncode), now - p.started
        time.sleep(0.005)
    return procs


def record(procs: list[Proc], ledger: Ledger) -> None:
    """Book each finished process: completed, killed (SIGKILL) or error."""
    for p in procs:
        ledger.counts[p.kind] = ledger.counts.get(p.kind, 0) + 1
        fate = "done" if p.rc == 0 else "killed" if p.rc == -9 else "error"
        ledger.counts["completed" if fate == "done" else "killed" if fate == "killed" else "errors"] += 1
        if fate == "error" and len(ledger.first_errors) < 10:
            ledger.first_errors.append(f"{p.kind} {p.label}: rc {p.rc}: {p.stderr.strip()[-300:]}")
        if p.kind == "classify":
            ledger.counts["classify_ok"] += fate == "done" and bool(json.loads(p.stdout)["results"])
        elif p.kind == "remove":
            ledger.removed[str(p.label)] = fate
        elif p.label in SHARED:
            book = ledger.shared_done if fate == "done" else ledger.shared_maybe if fate == "killed" else None
            if book is not None:
                book[p.label] += SHOTS
        else:
            ledger.enrolled[str(p.label)] = fate


def audit(store: Path, ledger: Ledger) -> tuple[int, list[str]]:
    """Completed changes missing from the store, and every other way it breaks the ledger."""
    c = read_store(store)
    have = dict(zip(c.labels, c.counts.tolist()))
    lost, problems = 0, []
    for lab in SHARED:
        low = 1 + ledger.shared_done[lab]  # 1: the seed shot
        high = low + ledger.shared_maybe[lab]
        got = have.pop(lab, 0)
        lost += max(0, low - got) // SHOTS
        if not low <= got <= high:
            problems.append(f"{lab}: {got} shots, expected {low}..{high}")
    for lab, fate in ledger.enrolled.items():
        gone = ledger.removed.get(lab)
        got = have.pop(lab, None)
        if got not in (None, SHOTS):
            problems.append(f"{lab}: {got} shots, expected {SHOTS}")
        if fate == "killed" or gone == "killed":
            continue  # a killed process may or may not have made its change
        must_be = fate == "done" and gone != "done"
        if (got is not None) != must_be:
            lost += fate == "done"
            problems.append(f"{lab}: {'missing' if must_be else 'still there'} (enroll {fate}, remove {gone})")
    problems += [f"unexpected label {lab!r}" for lab in have]
    return lost, problems


def wave_sizes(enrolls: int, sizes: list[int]) -> list[int]:
    """Wave sizes cycling through ``sizes`` until about ``enrolls`` / enroll share processes."""
    share = WEIGHTS["enroll"] / sum(WEIGHTS.values())
    total, out = round(enrolls / share), []
    while sum(out) < total:
        out.append(min(sizes[len(out) % len(sizes)], total - sum(out)))
    return out


def run(folder: Path, enrolls: int, sizes: list[int], kill_wave: int, seed: int = 0) -> dict:
    """Every wave, then the kill wave; returns the summary (``lost`` must be 0)."""
    paths, rng, ledger, serial = setup(folder), random.Random(seed), Ledger(), [0]
    t0, durations, problems = time.perf_counter(), [], []
    waves = wave_sizes(enrolls, sizes)
    for size in waves:
        procs = run_wave(plan(size, ledger, rng, serial), paths, rng)
        record(procs, ledger)
        durations += [p.seconds for p in procs if p.rc == 0]
        problems += _loads(paths["store"], f"after a wave of {size}")
    killed_mid_write = 0
    if kill_wave:
        typical = sorted(durations)[len(durations) // 2] if durations else 1.0
        jobs = plan(kill_wave, ledger, rng, serial, writers_only=True)
        delays = {i: rng.uniform(0.3, 1.2) * typical for i in range(len(jobs)) if rng.random() < 0.5}
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(paths["store"])], stdout=subprocess.PIPE, text=True)
        held = holder.stdout.readline().strip() == "held"  # type: ignore[union-attr]
        threading.Timer(rng.uniform(1.0, 1.5) * typical, holder.kill).start()  # while writers queue
        record(run_wave(jobs, paths, rng, delays), ledger)
        ledger.counts["lock_holder_killed"] = int(held and holder.wait() == -9)
        problems += _loads(paths["store"], "after the kill wave")
        killed_mid_write = len(list(folder.glob(".store.npz.*.tmp")))
    lost, audit_problems = audit(paths["store"], ledger)
    problems += audit_problems + _final_enroll(paths, rng)
    return {
        "waves": waves,
        "kill_wave": kill_wave,
        "processes": sum(waves) + kill_wave,
        **ledger.counts,
        "temp_files_left_by_kills": killed_mid_write,
        "lost": lost,
        "final_classes": len(read_store(paths["store"]).labels),
        "median_process_seconds": round(sorted(durations)[len(durations) // 2], 3) if durations else None,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "problems": len(problems),
        "first_problems": problems[:10],
        "first_errors": ledger.first_errors,
    }


def _loads(store: Path, when: str) -> list[str]:
    try:
        read_store(store)
    except Exception as e:  # noqa: BLE001 (recorded: the run goes on)
        return [f"store does not load {when}: {e}"]
    return []


def _final_enroll(paths: dict[str, Path], rng: random.Random) -> list[str]:
    """One more enroll must get the lock within 5 s (no stale lock) and leave no temp files."""
    argv = command("enroll", "final", paths, rng)
    res = subprocess.run(argv[:4] + ["--lock-timeout", "5"] + argv[4:], check=False, capture_output=True, text=True)
    out = [] if res.returncode == 0 else [f"final enroll failed: {res.stderr.strip()}"]
    temps = list(paths["store"].parent.glob(".store.npz.*.tmp"))
    return out + ([f"temp files left after a clean enroll: {temps}"] if temps else [])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--enrolls", type=int, default=200, help="enroll processes over all waves")
    parser.add_argument("--waves", default="2,10,40", help="processes per wave, cycled")
    parser.add_argument("--kill-wave", type=int, default=40, help="processes in the wave with SIGKILLs (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        doc = run(Path(tmp), args.enrolls, [int(x) for x in args.waves.split(",")], args.kill_wave, args.seed)
    print(json.dumps(doc, indent=2))
    holder_ok = not args.kill_wave or doc["lock_holder_killed"]
    return 1 if doc["lost"] or doc["problems"] or doc["errors"] or not holder_ok else 0


if __name__ == "__main__":
    sys.exit(main())
