"""The real-data parity fixture: 1,000 Omniglot evaluation and 1,000 MNIST test images, decoded
once here (raw uint8 files for JavaScript) and run through the Python runtime's public API on the
default model: all embeddings, and the top-1 and accept/reject decisions of episode sets.

Episode sets: Omniglot 20-way 1-shot and 10-way 5-shot, MNIST 10-way 5-shot (seeded).
"""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import numpy as np

from edgemeta.runtime import EmbeddingModel, FewShotClassifier

N_IMAGES = 1000


def omniglot_images(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [1000, 105, 105] (white background, as the official PNGs) and int labels [1000]:
    all 20 drawings of the first 50 characters of the evaluation set."""
    with np.load(root / "omniglot" / "images_evaluation.npz", allow_pickle=False) as z:
        images = z["images"][: N_IMAGES // 20]
    return (images.reshape(-1, 105, 105).astype(np.uint8) * 255), np.repeat(np.arange(N_IMAGES // 20), 20)


def mnist_images(root: Path) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [1000, 28, 28] and labels [1000]: the first 1,000 MNIST test digits (IDX files)."""
    with gzip.open(root / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), dtype=np.uint8, offset=16).reshape(-1, 28, 28)[:N_IMAGES]
    with gzip.open(root / "mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), dtype=np.uint8, offset=8)[:N_IMAGES]
    return images.copy(), labels.astype(np.int64)


def episodes(labels: np.ndarray, way: int, shot: int, query: int, count: int, seed: int) -> list[dict]:
    """Seeded episodes over image indices: {"support": {label: [i...]}, "queries": [i...], "truth": [label...]}."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        classes = rng.choice(np.unique(labels), way, replace=False)
        support, queries, truth = {}, [], []
        for c in classes:
            picked = rng.permutation(np.flatnonzero(labels == c))[: shot + query]
            support[f"class {c}"] = picked[:shot].tolist()
            queries += picked[shot:].tolist()
            truth += [f"class {c}"] * query
        out.append({"support": support, "queries": queries, "truth": truth})
    return out


def run_episodes(model: EmbeddingModel, images: np.ndarray, sets: list[dict]) -> None:
    """Adds Python's "top1" and "accepted" ({reject: [bool...]}) to each episode."""
    for ep in sets:
        clf = FewShotClassifier(model)
        for label, idx in ep["support"].items():
            clf.enroll(label, images[idx])
        queries = images[ep["queries"]]
        ep["top1"] = [row[0].label for row in clf.predict(queries)]
        ep["accepted"] = {r: [x is not None for x in clf.classify(queries, reject=r)] for r in ("strict", "balanced")}


def data_fixture(out: Path) -> None:
    root = Path(os.environ["EDGEMETA_DATA"])
    model = EmbeddingModel.default()
    index = {"model": str(model.path), "sets": {}}
    for name, (images, labels) in {"omniglot": omniglot_images(root), "mnist": mnist_images(root)}.items():
        (out / f"{name}.u8").write_bytes(np.ascontiguousarray(images).tobytes())
        (out / f"{name}.f32").write_bytes(model.embed(images).astype("<f4").tobytes())
        specs = [(20, 1, 4, 10, 0), (10, 5, 5, 10, 1)] if name == "omniglot" else [(10, 5, 15, 10, 2)]
        sets = {f"{w}-way {s}-shot": episodes(labels, w, s, q, n, seed) for w, s, q, n, seed in specs}
        for eps in sets.values():
            run_episodes(model, images, eps)
        index["sets"][name] = {"shape": list(images.shape), "episodes": sets}
    (out / "data.json").write_text(json.dumps(index))
