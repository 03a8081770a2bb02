"""Open-set figures of a model's rejection rule: false rejects of known queries, false accepts of
unknown ones, at each operating point, on data the rule was NOT calibrated on.

- Omniglot evaluation alphabets (never trained on by the default model), N-way K-shot with N more
  unknown classes per episode (their queries are never enrolled), N in 5 and 20, K in 1, 2, 5;
- MNIST test set (10,000 digits, a new domain): per episode 5 random digits enrolled and the other 5
  unknown, K in 1 and 5.

Decisions are exactly ``edgemeta eval --unknown``'s (``runtime.evaluation.evaluate`` with a
``rejection.OperatingPoint``), which are ``classify``'s; enrolled images are embedded with the
model's support_shift, as the runtime enrolls them. Every operating point sees the same episodes.
``--threshold T`` adds a column for one squared distance for every class (the rule before version 1);
the ``EER`` columns are oracles, not settings: the equal error rate of the plain nearest distance
and of the rule's score (d / its limit) with the threshold chosen on the row's own queries.

    EDGEMETA_DATA=../shared/data python benchmarks/open_set.py [--model models/default.onnx]
        [--episodes 500] [--seed 0] [--threshold T] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from edgemeta.lab.datasets import load_source
from edgemeta.lab.evaluation import (
    EpisodeSampler,
    EpisodeSpec,
    embed_all,
    embed_all_support,
    evaluate,
    nearest_block,
)
from edgemeta.runtime import EmbeddingModel
from edgemeta.runtime.rejection import OperatingPoint, operating_point

POINTS = [("strict", None), ("balanced", None), (None, 0.01), (None, 0.05)]
OMNIGLOT_TASKS = [(5, 1), (5, 2), (5, 5), (20, 1), (20, 2), (20, 5)]
MNIST_TASKS = [(5, 1), (5, 5)]


def measure(
    model: EmbeddingModel,
    data: str,
    split: str | None,
    tasks: list[tuple[int, int]],
    episodes: int,
    seed: int,
    threshold: float | None = None,
    query: int = 15,
) -> list[dict[str, Any]]:
    """One row per (way, shot): closed-set accuracy, AUROC, FRR / FAR per operating point."""
    fs = load_source(data, model.meta.preprocess, split=split)
    emb = embed_all(model, fs.images)
    shift = model.meta.support_shift
    support = embed_all_support(model, fs.images, shift) if shift else None
    rows = []
    for way, shot in tasks:
        spec = EpisodeSpec(way, shot, query, unknown=way if fs.num_classes >= 2 * way else fs.num_classes - way)
        row: dict[str, Any] = {
            "data": Path(data).name + (f" ({split})" if split else ""),
            "way": way,
            "shot": shot,
            "unknown": spec.unknown,
            "episodes": episodes,
        }
        points = [operating_point(model.meta.rejection, model.meta.threshold, reject, far) for reject, far in POINTS]
        if threshold is not None:
            points.append(operating_point(None, None, threshold=threshold))
        for op in points:
            r = evaluate(
                emb, fs.targets, spec, episodes, seed, metric=model.meta.metric, rejection=op, support_emb=support
            )
            if op is points[1]:  # balanced: AUROC of the rule's score (d / limit; the same for any tau)
                row.update(accuracy=r.accuracy, auroc=r.auroc)
            row[op.name] = {"frr": r.false_reject_rate, "far": r.false_accept_rate, "limit": r.threshold}
        row["eer_distance"], row["eer_rule"] = oracle_eers(fs.targets, spec, emb, support, episodes, seed, points[1])
        rows.append(row)
    return rows


def oracle_eers(
    targets: Any, spec: EpisodeSpec, emb: Any, support: Any, episodes: int, seed: int, op: OperatingPoint
) -> tuple[float, float]:
    """Equal error rates of the nearest distance and of d / op's limit, over ``episodes`` episodes of
    the kind ``spec`` (seed ``seed``)."""
    ep = EpisodeSampler(targets, spec).sample(np.random.default_rng(seed), episodes)
    _, d, sq_norm = nearest_block(emb, ep, support)
    score = d / op.limits(spec.shot, spec.way, sq_norm)
    known = spec.way * spec.query
    return eer(d[:, :known], d[:, known:]), eer(score[:, :known], score[:, known:])


def eer(known: Any, unknown: Any) -> float:
    """The rate where false rejects (known above t) meet false accepts (unknown at or below t)."""
    k, u = np.sort(known.ravel()), np.sort(unknown.ravel())
    grid = np.unique(np.concatenate([k, u]))
    frr = 1 - np.searchsorted(k, grid, side="right") / k.size
    far = np.searchsorted(u, grid, side="right") / u.size
    i = int(np.argmax(frr <= far))
    return float((frr[i] + far[i]) / 2)


def markdown(rows: list[dict[str, Any]]) -> str:
    names = [k for k in rows[0] if isinstance(rows[0][k], dict)]
    head = (
        "| data | way | shot | unknown classes | accuracy | AUROC (rule) | "
        + " | ".join(f"{n} FRR / FAR" for n in names)
        + " | EER distance / rule (oracle) |"
    )
    lines = [head, "|" + "---|" * (7 + len(names))]
    for r in rows:
        cells = [f"{100 * r[n]['frr']:.1f} / {100 * r[n]['far']:.1f} %" for n in names]
        lines.append(
            f"| {r['data']} | {r['way']} | {r['shot']} | {r['unknown']} | {100 * r['accuracy']:.1f} % | "
            f"{r['auroc']:.4f} | "
            + " | ".join(cells)
            + f" | {100 * r['eer_distance']:.1f} / {100 * r['eer_rule']:.1f} % |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=None, help="ONNX model (default: the shipped default model)")
    parser.add_argument("--episodes", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threshold", type=float, default=None, help="also one squared distance for every class")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    args = parser.parse_args(argv)
    root = os.environ.get("EDGEMETA_DATA")
    if not root:
        print("set EDGEMETA_DATA to the data folder (omniglot/, mnist/)", file=sys.stderr)
        return 2
    model = EmbeddingModel(args.model) if args.model else EmbeddingModel.default()
    rows = measure(model, f"{root}/omniglot", "evaluation", OMNIGLOT_TASKS, args.episodes, args.seed, args.threshold)
    rows += measure(model, f"{root}/mnist", None, MNIST_TASKS, args.episodes, args.seed, args.threshold)
    if args.json:
        print(
            json.dumps(
                {
                    "model": str(model.path),
                    "fingerprint": model.fingerprint,
                    "seed": args.seed,
                    "rejection": model.meta.rejection.to_dict() if model.meta.rejection else None,
                    "rows": rows,
                }
            )
        )
    else:
        print(f"model {model.path} ({model.fingerprint[:12]}), {args.episodes} episodes per row, seed {args.seed}\n")
        print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
