"""Calibrate the rejection rule of an existing model file and write it into its metadata in place.

``python -m edgemeta.export.recalibrate MODEL.onnx ... [--data SRC]``: per file, the classes its
training never saw (``data.load_validation`` on the ``training`` section of its metadata: the held-out
alphabets of a background run, the test split of a ``vinyals-trainval`` run) are embedded through the
runtime, as queries and as enrolled images (``support_shift``), and ``threshold.calibrate_rejection``
fits the rule; ``model_files.rewrite_metadata`` writes it (the network is untouched, and stores made
with the old file keep loading).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgemeta.runtime.metadata import ModelMetadata


def recalibrate(path: str | Path, data: str | None = None, seed: int = 0) -> dict[str, Any]:
    """Calibrate ``path``'s rule on its never-trained classes and rewrite its metadata; returns
    {"path", "fingerprint", "rejection", "calibration"}."""
    from edgemeta.lab.evaluation import embed_all, embed_all_support
    from edgemeta.runtime.errors import ExportError
    from edgemeta.runtime.model import EmbeddingModel

    from .model_files import rewrite_metadata
    from .threshold import calibrate_rejection, legacy_threshold
    from .validation_data import load_validation

    model = EmbeddingModel(path)
    meta = model.meta
    # --data says where the training source is on this machine: the classes held out of it, not all of it
    training = meta.training if data is None else {**meta.training, "data": data}
    val = load_validation(training, None, None, meta.preprocess, seed=seed)
    if val.synthetic:
        raise ExportError(f"{path}: its training data is not here (pass --data) to calibrate on")
    emb = embed_all(model, val.images)
    support = embed_all_support(model, val.images, meta.support_shift) if meta.support_shift else None
    rule, how = calibrate_rejection(emb, val.targets, meta.metric, support_emb=support, seed=seed)
    if rule is None:
        raise ExportError(f"{path}: {how['reason']}")
    how = {**how, "support_shift": meta.support_shift, **val.describe(), "held_out": getattr(val, "held_out", "")}
    rule = replace(rule, calibration={k: v for k, v in how.items() if k != "kinds"})

    def update(old: ModelMetadata) -> ModelMetadata:
        return replace(
            old,
            rejection=rule,
            threshold=legacy_threshold(rule, how["median_sq_norm"]),
            accuracy={**old.accuracy, "rejection": how},
        )

    fingerprint = rewrite_metadata(path, update)
    return {"path": str(path), "fingerprint": fingerprint, "rejection": rule.to_dict(), "calibration": how}


def main(argv: list[str] | None = None) -> int:
    from edgemeta.runtime.errors import EdgemetaError

    parser = argparse.ArgumentParser(prog="python -m edgemeta.export.recalibrate", description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="model files to rewrite in place")
    parser.add_argument(
        "--data",
        default=None,
        help="where the model's training source is on this machine (default: the path in its metadata); "
        "the classes its training held out of it are used",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in args.models:
        try:
            r = recalibrate(path, args.data, args.seed)
        except EdgemetaError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        rule = r["rejection"]
        print(
            f"{path}: beta {rule['shot_coef']:.3f}, gamma {rule['class_coef']:.3f}, tau strict "
            f"{rule['tau']['strict']:.4g} balanced {rule['tau']['balanced']:.4g}; calibrated on "
            f"{r['calibration']['classes']} classes ({r['calibration']['held_out']}); fingerprint now {r['fingerprint'][:12]}"
        )
        for kind in r["calibration"]["kinds"]:
            print(
                f"  {kind['way']:>2}-way {kind['shot']}-shot: balanced FRR {kind['balanced_frr']:.3f} FAR "
                f"{kind['balanced_far']:.3f}; strict FRR {kind['strict_frr']:.3f} FAR {kind['strict_far']:.3f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
