"""Accuracy of a model under the field's standard few-shot protocols, as markdown table rows.

Each data set is loaded and embedded once through the runtime; every protocol then runs
``--episodes`` episodes (seed 0) on those embeddings, exactly as ``edgemeta eval`` does.

    python benchmarks/eval_protocols.py [--model M.onnx] [--data ../shared/data] [--episodes 1000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from edgemeta.lab.datasets import load_source
from edgemeta.lab.evaluation import EpisodeSpec, embed_all, embed_all_support, evaluate
from edgemeta.runtime import EmbeddingModel

# (source folder, split, label, [(way, shot, within_alphabet, unknown)])
PROTOCOLS = [
    (
        "omniglot",
        "vinyals-test",
        "Omniglot Vinyals test (+rotations)",
        [(5, 1, False, 0), (5, 5, False, 0), (20, 1, False, 0), (20, 5, False, 0), (5, 1, False, 5)],
    ),
    (
        "omniglot",
        "evaluation",
        "Omniglot evaluation set",
        [(5, 1, False, 0), (20, 1, False, 0), (5, 1, True, 0), (20, 1, True, 0)],
    ),
    ("mnist", None, "MNIST t10k (novel domain)", [(10, 1, False, 0), (10, 5, False, 0), (5, 1, False, 5)]),
]


def rows(model: EmbeddingModel, data_root: Path, episodes: int, query: int) -> list[str]:
    """One markdown row per protocol."""
    out = []
    for folder, split, label, runs in PROTOCOLS:
        t0 = time.perf_counter()
        data = load_source(
            data_root / folder, model.meta.preprocess, split=split, rotations=True if split == "vinyals-test" else None
        )
        emb = embed_all(model, data.images)
        shift = model.meta.support_shift  # support images embedded as enroll embeds them
        support = embed_all_support(model, data.images, shift) if shift else None
        print(f"{label}: {len(emb)} images embedded in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        for way, shot, within, unknown in runs:
            r = evaluate(
                emb,
                data.targets,
                EpisodeSpec(way, shot, query, unknown, within),
                episodes,
                seed=0,
                groups=data.class_groups,
                metric=model.meta.metric,
                threshold=model.meta.threshold,
                support_emb=support,
            )
            task = (
                f"{way}-way {shot}-shot"
                + (" within alphabet" if within else "")
                + (f", {unknown} unknown" if unknown else "")
            )
            extra = f"AUROC {r.auroc:.3f}" if r.auroc is not None else ""
            if r.false_accept_rate is not None:
                extra += f", FAR {100 * r.false_accept_rate:.1f}% at threshold"
            out.append(f"| {label} | {task} | {100 * r.accuracy:.2f} ± {100 * r.ci95:.2f} | {extra} |")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model"), parser.add_argument("--threads", type=int)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--episodes", type=int, default=1000)
    parser.add_argument("--query", type=int, default=15)
    args = parser.parse_args()
    model = (
        EmbeddingModel(args.model, threads=args.threads) if args.model else EmbeddingModel.default(threads=args.threads)
    )
    print(
        f"model {model.path} ({model.fingerprint[:12]}), {args.episodes} episodes, {args.query} queries per class, seed 0"
    )
    print("\n| data | task | accuracy % (95% CI) | open set |\n|---|---|---|---|")
    print("\n".join(rows(model, Path(args.data), args.episodes, args.query)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
