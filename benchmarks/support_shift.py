"""How the support shift was chosen: accuracy on validation classes for several shifts.

The classes are the 4 background alphabets every training run of the default model holds out
(``edgemeta.train.data.held_out_classes``; no rotations), so no test alphabet is looked at.
Queries are embedded once; support images as ``enroll`` embeds them with each shift.

    python benchmarks/support_shift.py [--model models/default.onnx] [--shifts 0 1 2]
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

from edgemeta.runtime import EmbeddingModel
from edgemeta.runtime.evaluation import EpisodeSpec, embed_all, embed_all_support, evaluate
from edgemeta.train.data import load_train_val

TASKS = [(5, 1), (20, 1), (20, 5)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot"))
    parser.add_argument("--shifts", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--episodes", type=int, default=1000)
    args = parser.parse_args()
    model = EmbeddingModel(args.model) if args.model else EmbeddingModel.default()
    cfg = types.SimpleNamespace(data=args.data, split="background", rotations=True, val_groups=4, test_way=20,
                                test_shot=1, test_query=15, way=5, shot=[1], query=5)
    _, val, info = load_train_val(cfg, model.meta.preprocess)
    print(f"model {model.path}; validation: {val.num_classes} classes of {', '.join(info['val_held_out_groups'])}; "
          f"{args.episodes} episodes, 15 queries, seed 0")
    queries = embed_all(model, val.images)
    print("| support shift | " + " | ".join(f"{w}-way {k}-shot" for w, k in TASKS) + " |")
    print("|---" * (len(TASKS) + 1) + "|")
    for shift in args.shifts:
        support = embed_all_support(model, val.images, shift)
        cells = [evaluate(queries, val.targets, EpisodeSpec(w, k, 15), args.episodes, seed=0, support_emb=support)
                 for w, k in TASKS]
        print(f"| {shift} | " + " | ".join(f"{100 * r.accuracy:.2f} ± {100 * r.ci95:.2f}" for r in cells) + " |",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
