"""Colour as the cue: the grayscale Conv-4 against the RGB Conv-4 and the RGB MobileNetV3-small on
held-out colour-shape combinations (``lab/colour_shapes.py``: 6 colours x 8 shapes, 12 pairings
never seen in training, among them pairs that differ only in colour).

Each model is trained, exported and evaluated through the CLI exactly as a user would run it;
every model is evaluated on the same held-out episodes (``edgemeta eval --seed``), 5-way 1-shot
and 5-shot, with a 95 % confidence interval.

    python benchmarks/colour_heldout.py --out /tmp/colour_bench [--per-class 20] [--episodes 100000]
        [--time-limit 2220] [--lr-schedule time] [--eval-episodes 600] [--models "gray conv4,RGB conv4"] [--json]

Training is bounded by ``--time-limit`` (seconds per model); with ``--lr-schedule time`` (the default)
the learning rate halves at every eighth of it, so a run completes its schedule whatever the machine's
speed. Models may be trained by separate invocations (``--models``) into one ``--out``: the data is
seeded, so all of them see the same images and the same evaluation episodes.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from edgemeta.lab.colour_shapes import write_colour_shapes

# name, backbone, channels, input size, further training options. Every model uses cosine distance:
# under squared Euclidean distances the first episodes' losses are huge (about 15 against ln 12) and
# shape, the cue a grayscale model has, was learned far more slowly (gray Conv-4, constant lr, no
# augmentation, 800 episodes: 45 % training accuracy against 83 % with cosine); MobileNetV3's 576-d
# features barely learned under it at all. MobileNetV3-small takes 48x48 (stride 32: a 2x2 final
# map), 1.8 times fewer pixels than 64x64, for more episodes in a CPU-bound time limit.
MODELS = (
    ("gray conv4", "conv4", 1, 32, ("--metric", "cosine")),
    ("RGB conv4", "conv4", 3, 32, ("--metric", "cosine")),
    ("RGB mobilenet_v3_small", "mobilenet_v3_small", 3, 48, ("--metric", "cosine")),
)


def _cli(*args: str) -> str:
    """Run ``edgemeta ARGS`` in a fresh process; its stdout (stderr passes through)."""
    cmd = [sys.executable, "-m", "edgemeta", *args]
    print("$ edgemeta " + " ".join(args), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout


def train_and_export(
    out: Path, train: Path, held: Path, backbone: str, channels: int, size: int, extra: tuple, a: Any
) -> Path:
    run = out / f"{backbone}_c{channels}_s{size}"
    model = run.with_suffix(".onnx")
    if a.reuse and model.is_file():
        return model
    _cli(
        "train", "--data", str(train), "--out", str(run), "--overwrite", "--backbone", backbone,
        "--channels", str(channels), "--size", str(size), "--episodes", str(a.episodes), "--way", "12",
        "--shot", "1,5", "--query", "5", "--time-limit", str(a.time_limit), "--lr-schedule", a.lr_schedule,
        "--val-every", str(a.episodes), "--val-episodes", "200", "--seed", str(a.seed), "--no-progress", "--json",
        *extra,
    )  # fmt: skip
    _cli("export", str(run), "--out", str(model), "--data", str(held), "--episodes", "100")
    return model


def evaluate(model: Path, held: Path, shot: int, a: Any) -> dict[str, Any]:
    text = _cli(
        "eval", "--model", str(model), "--data", str(held), "--way", "5", "--shot", str(shot), "--query", "10",
        "--episodes", str(a.eval_episodes), "--seed", str(a.seed), "--json",
    )  # fmt: skip
    return json.loads(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--episodes", type=int, default=100000, help="Training episodes per model at most.")
    p.add_argument("--time-limit", type=float, default=2220.0, help="Seconds of training per model at most.")
    p.add_argument("--lr-schedule", choices=("episodes", "time"), default="time", help="As edgemeta train's.")
    p.add_argument("--eval-episodes", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--models", default="", help="Comma-separated names of MODELS to run (default: all).")
    p.add_argument("--reuse", action="store_true", help="Evaluate models already exported in --out again.")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    train, held = a.out / "data" / "train", a.out / "data" / "heldout"
    if not held.is_dir():
        write_colour_shapes(a.out / "data", a.per_class, seed=a.seed)
    rows = []
    for name, backbone, channels, size, extra in MODELS:
        if a.models and name not in a.models.split(","):
            continue
        started = time.perf_counter()
        model = train_and_export(a.out, train, held, backbone, channels, size, extra, a)
        row: dict[str, Any] = {"model": name, "backbone": backbone, "channels": channels, "size": size}
        for shot in (1, 5):
            r = evaluate(model, held, shot, a)
            row[f"{shot}-shot"] = {"accuracy": r["accuracy"], "ci95": r["ci95"]}
        row["seconds"] = round(time.perf_counter() - started, 1)
        row["summary"] = json.loads((a.out / f"{backbone}_c{channels}_s{size}" / "summary.json").read_text())
        rows.append(row)
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    print("| model | input | 5-way 1-shot | 5-way 5-shot | train episodes |")
    print("|---|---|---|---|---|")
    for r in rows:
        cells = [f"{100 * r[k]['accuracy']:.2f} % ± {100 * r[k]['ci95']:.2f}" for k in ("1-shot", "5-shot")]
        shape = f"{r['channels']}x{r['size']}x{r['size']}"
        print(f"| {r['model']} | {shape} | {cells[0]} | {cells[1]} | {r['summary']['episodes']} |")


if __name__ == "__main__":
    main()
