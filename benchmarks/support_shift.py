"""How the support shift was chosen: accuracy on validation classes for several shifts.

The classes are the 4 background alphabets every training run of the default model holds out
(``edgemeta.lab.datasets.held_out_classes``; no rotations), so no test alphabet is looked at.
Queries are embedded once; support images as ``enroll`` embeds them with each shift.

    python benchmarks/support_shift.py [--model models/default.onnx] [--shifts 0 1 2]
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

from edgemeta.lab.evaluation import EpisodeSpec, embed_all, embed_all_support, evaluate
from edgemeta.runtime import EmbeddingModel
from edgemeta.train.data import load_train_val

TASKS = [(5, 1), (20, 1), (20, 5)]
DEFAULT_DATA = str(Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot")


def training_and_validation_sets(data: str, preprocess: Any) -> tuple[Any, Any, list[str]]:
    """The default model's training classes (26 background alphabets, with rotations), the
    held-out background alphabets (no rotations) at the model's preprocessing, and their names."""
    cfg = types.SimpleNamespace(
        data=data,
        split="background",
        rotations=True,
        val_groups=4,
        test_way=20,
        test_shot=1,
        test_query=15,
        way=5,
        shot=[1],
        query=5,
    )
    train, val, info = load_train_val(cfg, preprocess)
    return train, val, info["val_held_out_groups"]


def validation_set(data: str, preprocess: Any) -> tuple[Any, list[str]]:
    """The held-out background alphabets (no rotations) at the model's preprocessing, and their names."""
    _, val, groups = training_and_validation_sets(data, preprocess)
    return val, groups


def table_row(name: Any, queries: np.ndarray, support: np.ndarray, targets: np.ndarray, episodes: int) -> str:
    """One markdown row: accuracy ± 95% CI on each of ``TASKS``, queries [M, D], support [M, D]."""
    cells = [evaluate(queries, targets, EpisodeSpec(w, k, 15), episodes, seed=0, support_emb=support) for w, k in TASKS]
    return f"| {name} | " + " | ".join(f"{100 * r.accuracy:.2f} ± {100 * r.ci95:.2f}" for r in cells) + " |"


def table_header(first: str) -> str:
    return (
        f"| {first} | " + " | ".join(f"{w}-way {k}-shot" for w, k in TASKS) + " |\n" + "|---" * (len(TASKS) + 1) + "|"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--shifts", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=1000)
    args = parser.parse_args()
    model = EmbeddingModel(args.model) if args.model else EmbeddingModel.default()
    val, groups = validation_set(args.data, model.meta.preprocess)
    print(
        f"model {model.path}; validation: {val.num_classes} classes of {', '.join(groups)}; "
        f"{args.episodes} episodes, 15 queries, seed 0"
    )
    queries = embed_all(model, val.images)
    print(table_header("support shift"))
    for shift in args.shifts:
        support = embed_all_support(model, val.images, shift)
        print(table_row(shift, queries, support, val.targets, args.episodes), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
