"""Refresh the metadata of the shipped model files (``models/*.onnx``) reproducibly; only metadata
changes (``rewrite_metadata`` checks the embeddings bit for bit), and each file lists its old
fingerprint so that stores made with it still load.

What it writes, as ``edgemeta export`` writes it for new files:

- ``network``: one id for a fp32 file and its int8 sibling (these files predate export's
  checkpoint-weights id: the sha256 of the fp32 file's graph), and the int8 file's measured
  top-1 nearest-prototype agreement with the fp32 file on 1000 seeded 5-way 1-shot episodes of
  held-out classes: at least ``MIN_STORE_AGREEMENT``, and the two share prototype stores;
- ``domain``: the statistics of those held-out images (``edgemeta.runtime.domain``);
- ``accuracy.export_check``: 5-way 1-shot accuracy on classes the network never saw, from
  ``edgemeta eval`` (1000 episodes, seed 0) on the test split that goes with its training split.

    EDGEMETA_DATA=../shared/data python -m edgemeta.export.refresh_shipped [MODELS_DIR]
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from edgemeta.runtime.metadata import ModelMetadata
from edgemeta.runtime.model import default_model_path

from .model_files import rewrite_metadata
from .validation_data import ImageSet, domain_metadata, load_validation
from .verify import same_decisions

FAMILIES = {"default.onnx": ["default.int8.onnx"], "vinyals.onnx": []}
TEST_SPLIT = {"background": "evaluation", "vinyals-trainval": "vinyals-test"}
EPISODES = 1000


def held_out_accuracy(model: Path, data: str, split: str) -> dict[str, Any]:
    """5-way 1-shot on ``split`` through ``edgemeta eval --json`` (the command the model card quotes)."""
    args = [
        "eval",
        "--model",
        str(model),
        "--data",
        data,
        "--split",
        split,
        "--way",
        "5",
        "--shot",
        "1",
        "--episodes",
        str(EPISODES),
        "--seed",
        "0",
        "--json",
    ]
    out = subprocess.run([sys.executable, "-m", "edgemeta", *args], check=True, capture_output=True, text=True).stdout
    r = json.loads(out)
    keep = (
        "accuracy",
        "ci95",
        "way",
        "shot",
        "query",
        "episodes",
        "seed",
        "split",
        "classes",
        "images",
        "support_shift",
    )
    return {
        **{k: r[k] for k in keep},
        "data": "omniglot",
        "held_out": f"split {split}: classes training never saw",
        "command": "edgemeta "
        + " ".join(args[:2] + [f"models/{model.name}", "--data", "../shared/data/omniglot"] + args[5:]),
    }


def agreement(reference: Path, other: Path, val: ImageSet) -> dict[str, Any]:
    """Top-1 agreement of ``other`` with ``reference`` in seeded episodes of the validation images."""
    from edgemeta.runtime.model import EmbeddingModel

    a, b = (EmbeddingModel(p).embed_prepared(val.images) for p in (reference, other))
    same = same_decisions(a, b, val.targets, "sqeuclidean", EPISODES, seed=0)
    return {
        "top1": float(same.mean()),
        "decisions": int(same.size),
        "episodes": EPISODES,
        **{k: v for k, v in val.describe().items() if k != "synthetic"},
    }


def refresh_family(folder: Path, name: str, data_root: str, say=print) -> None:
    """Rewrite ``name`` (fp32) and its int8 siblings in ``folder``."""
    import onnx

    from edgemeta.runtime.model import EmbeddingModel

    fp32 = folder / name
    meta = EmbeddingModel(fp32).meta
    omniglot = str(Path(data_root) / "omniglot")
    config = {"data": omniglot, "split": meta.training.get("split"), "val_groups": 4, "test_way": 20}
    val = load_validation(config, None, None, meta.preprocess)
    say(f"{name}: held-out images {val.describe()}")
    domain = {**domain_metadata(config, val), "data": "omniglot"}
    net_id = hashlib.sha256(onnx.load(str(fp32)).graph.SerializeToString()).hexdigest()
    test_split = TEST_SPLIT[str(meta.training.get("split"))]
    for file in [fp32, *(folder / s for s in FAMILIES[name])]:
        network: dict[str, Any] = {"id": net_id, "reference": file == fp32}
        if file != fp32:
            network["agreement"] = {**agreement(fp32, file, val), "data": "omniglot", "reference_file": name}
        acc = held_out_accuracy(file, omniglot, test_split)
        say(
            f"  {file.name}: {network.get('agreement', {}).get('top1', 'reference')}, 5-way 1-shot {acc['accuracy']:.4f}"
        )
        new = rewrite_metadata(file, lambda m: _updated(m, network, domain, acc))
        say(f"  {file.name}: fingerprint now {new[:12]}")


def _updated(
    meta: ModelMetadata, network: dict[str, Any], domain: dict[str, Any], acc: dict[str, Any]
) -> ModelMetadata:
    accuracy = {k: v for k, v in meta.accuracy.items() if k != "int8"}  # int8's old check was on training classes too
    accuracy["export_check"] = acc
    if meta.training.get("split") == "vinyals-trainval" and isinstance(accuracy.get("best_val"), dict):
        accuracy["best_val"] = {
            **accuracy["best_val"],
            "held_out": None,
            "note": "vinyals-val, whose classes vinyals-trainval trains on: a measure of fit",
        }
    return replace(meta, network=network, domain=domain, accuracy=accuracy)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = Path(args[0]) if args else default_model_path().parent
    data_root = os.environ.get("EDGEMETA_DATA")
    if not data_root:
        print("set EDGEMETA_DATA to the shared data folder", file=sys.stderr)
        return 2
    for name in FAMILIES:
        if (folder / name).is_file():
            refresh_family(folder, name, data_root)
    return 0


if __name__ == "__main__":
    sys.exit(main())
