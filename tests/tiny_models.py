"""Tiny ONNX embedding models and synthetic images for hermetic tests (onnx.helper, no torch)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIZE = 8


def metadata(dim: int, size: int = SIZE, channels: int = 1, **overrides: Any) -> dict[str, Any]:
    meta = {
        "format_version": 1,
        "input_name": "images",
        "output_name": "embeddings",
        "embedding_dim": dim,
        "metric": "sqeuclidean",
        "threshold": None,
        "preprocess": {
            "size": [size, size],
            "channels": channels,
            "resize": "bilinear",
            "polarity": "light_on_dark" if channels == 1 else "none",
            "auto_polarity": True,
            "mean": [0.0] * channels,
            "std": [1.0] * channels,
        },
        "training": {"data": "synthetic"},
        "accuracy": {},
    }
    meta.update(overrides)
    return meta


def linear_model(
    path: Path,
    weights: np.ndarray | None = None,
    size: int = SIZE,
    channels: int = 1,
    meta: dict[str, Any] | None = None,
    with_metadata: bool = True,
) -> Path:
    """Embedding = flatten(image) @ weights; weights float32 [C*size*size, D] (identity by default)."""
    n_in = channels * size * size
    w = np.eye(n_in, dtype=np.float32) if weights is None else weights.astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["images"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["embeddings"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", w.shape[1]])],
        [numpy_helper.from_array(w, "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if with_metadata:
        doc = meta if meta is not None else metadata(w.shape[1], size, channels)
        helper.set_model_props(model, {"edgemeta": json.dumps(doc)})
    onnx.save(model, str(path))
    return path


def class_image(k: int, rng: np.random.Generator | None = None, size: int = SIZE) -> np.ndarray:
    """uint8 [size, size]: a bright 3x3 square at a place that depends on class k, dark background."""
    img = np.zeros((size, size), dtype=np.uint8)
    r, c = divmod(k, size - 4)
    img[1 + r : 4 + r, 1 + c : 4 + c] = 255
    if rng is not None:
        img = np.clip(img.astype(int) + rng.integers(-20, 21, img.shape), 0, 255).astype(np.uint8)
        img[0, :] = img[-1, :] = img[:, 0] = img[:, -1] = 0
    return img


def class_batch(k: int, n: int, seed: int = 0, size: int = SIZE) -> np.ndarray:
    """uint8 [n, size, size]: n noisy drawings of class k."""
    rng = np.random.default_rng(seed + 1000 * k)
    return np.stack([class_image(k, rng, size) for _ in range(n)])


def write_class_folders(root: Path, classes: int, per_class: int) -> Path:
    """A class-per-folder tree in ``root``: ``c{k}/{i}.png``, ``class_batch(k, per_class)`` each."""
    from PIL import Image

    for k in range(classes):
        (root / f"c{k}").mkdir(parents=True)
        for i, img in enumerate(class_batch(k, per_class)):
            Image.fromarray(img).save(root / f"c{k}" / f"{i}.png")
    return root
