"""Variants tried for the default model, on validation classes: ensembles and shifted queries.

The classes are the 4 background alphabets every training run of the default model holds out
(as in ``support_shift.py``), so no test alphabet is looked at. Support images are embedded as
``enroll`` embeds them (shift 1). Two variants, each against the first model alone:

- an ensemble of several ONNX files: their embeddings concatenated, so squared distances add up;
- queries embedded as the mean over their 3x3 one-pixel shifts, like enrolled images (9 network
  calls per query instead of 1).

    python benchmarks/validation_variants.py --model runs/lake_cpu6/model.onnx [--model B.onnx ...]
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import numpy as np

from edgemeta.runtime import EmbeddingModel
from edgemeta.runtime.evaluation import EpisodeSpec, embed_all, embed_all_support, evaluate
from edgemeta.train.data import load_train_val

TASKS = [(5, 1), (20, 1), (20, 5)]


def row(name: str, queries: np.ndarray, support: np.ndarray, targets: np.ndarray, episodes: int) -> str:
    cells = [evaluate(queries, targets, EpisodeSpec(w, k, 15), episodes, seed=0, support_emb=support)
             for w, k in TASKS]
    return f"| {name} | " + " | ".join(f"{100 * r.accuracy:.2f} ± {100 * r.ci95:.2f}" for r in cells) + " |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="ONNX file; repeat for an ensemble")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"))
    parser.add_argument("--episodes", type=int, default=1000)
    args = parser.parse_args()
    models = [EmbeddingModel(p) for p in args.model]
    cfg = types.SimpleNamespace(data=args.data, split="background", rotations=True, val_groups=4, test_way=20,
                                test_shot=1, test_query=15, way=5, shot=[1], query=5)
    if len({m.meta.preprocess.size for m in models}) > 1:
        sys.exit("all models must take the same input size")
    _, val, _ = load_train_val(cfg, models[0].meta.preprocess)
    queries = [embed_all(m, val.images) for m in models]
    support = [embed_all_support(m, val.images, 1) for m in models]
    print(f"validation: {val.num_classes} classes; {args.episodes} episodes, 15 queries, seed 0")
    print("| variant | " + " | ".join(f"{w}-way {k}-shot" for w, k in TASKS) + " |")
    print("|---" * (len(TASKS) + 1) + "|")
    names = [str(Path(p).parent.name if Path(p).name == "model.onnx" else Path(p).name) for p in args.model]
    print(row(names[0], queries[0], support[0], val.targets, args.episodes), flush=True)
    print(row(f"{names[0]}, queries over 9 shifts", support[0], support[0], val.targets, args.episodes), flush=True)
    for n in range(2, len(models) + 1):
        print(row("ensemble " + " + ".join(names[:n]), np.concatenate(queries[:n], 1), np.concatenate(support[:n], 1),
                  val.targets, args.episodes), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
