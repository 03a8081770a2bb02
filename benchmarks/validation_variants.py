"""Variants tried for the default model, on validation classes: ensembles and shifted queries.

The classes are the 4 background alphabets every training run of the default model holds out
(as in ``support_shift.py``), so no test alphabet is looked at. Support images are embedded as
``enroll`` embeds them (shift 1). Two variants, each against the first model alone:

- an ensemble of several ONNX files: their embeddings concatenated, so squared distances add up;
- queries embedded as the mean over their 3x3 one-pixel shifts, like enrolled images (9 network
  calls per query instead of 1), and over the 3- and 5-view subsets of ``--query-views``;
- embeddings L2-normalized, and centered on the mean embedding of 8,000 training images before
  L2 normalization (SimpleShot's CL2N), both for the first model.

    python benchmarks/validation_variants.py --model runs/lake_cpu6/model.onnx [--model B.onnx ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from support_shift import DEFAULT_DATA, table_header, table_row, training_and_validation_sets

from edgemeta.lab.evaluation import embed_all, embed_all_queries, embed_all_support
from edgemeta.runtime import EmbeddingModel
from edgemeta.runtime.nearest import l2_normalize


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", action="append", required=True, help="ONNX file; repeat for an ensemble")
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--episodes", type=int, default=1000)
    args = parser.parse_args()
    models = [EmbeddingModel(p) for p in args.model]
    if len({m.meta.preprocess.size for m in models}) > 1:
        sys.exit("all models must take the same input size")
    train, val, _ = training_and_validation_sets(args.data, models[0].meta.preprocess)
    queries = [embed_all(m, val.images) for m in models]
    support = [embed_all_support(m, val.images, 1) for m in models]
    print(f"validation: {val.num_classes} classes; {args.episodes} episodes, 15 queries, seed 0")
    print(table_header("variant"))
    names = [str(Path(p).parent.name if Path(p).name == "model.onnx" else Path(p).name) for p in args.model]
    print(table_row(names[0], queries[0], support[0], val.targets, args.episodes), flush=True)
    print(
        table_row(f"{names[0]}, queries over 9 shifts", support[0], support[0], val.targets, args.episodes), flush=True
    )
    for views in (3, 5):
        print(
            table_row(
                f"{names[0]}, --query-views {views}",
                embed_all_queries(models[0], val.images, views),
                support[0],
                val.targets,
                args.episodes,
            ),
            flush=True,
        )
    sample = np.random.default_rng(0).choice(len(train.images), min(8000, len(train.images)), replace=False)
    train_mean = embed_all(models[0], train.images[np.sort(sample)]).mean(axis=0)
    for label, center in (("L2-normalized", 0.0), ("centered on the training mean, L2-normalized", train_mean)):
        print(
            table_row(
                f"{names[0]}, {label}",
                l2_normalize(queries[0] - center),
                l2_normalize(support[0] - center),
                val.targets,
                args.episodes,
            ),
            flush=True,
        )
    for n in range(2, len(models) + 1):
        print(
            table_row(
                "ensemble " + " + ".join(names[:n]),
                np.concatenate(queries[:n], 1),
                np.concatenate(support[:n], 1),
                val.targets,
                args.episodes,
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
