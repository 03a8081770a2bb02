"""A Conv-4-shaped ONNX embedding model built with onnx.helper (no torch), for benchmarks.

4 x [conv3x3 64 (+bias: BatchNorm folded), ReLU, maxpool 2] -> flatten; random He weights.
Same graph and cost as an exported Conv-4 (export folds BatchNorm into the convolutions).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def conv4_onnx(path: Path, size: int = 28, channels: int = 1, hidden: int = 64, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits, prev, c_in = [], [], "images", channels
    for i in range(4):
        w = (rng.normal(size=(hidden, c_in, 3, 3)) * np.sqrt(2.0 / (9 * c_in))).astype(np.float32)
        inits += [numpy_helper.from_array(w, f"w{i}"), numpy_helper.from_array(np.zeros(hidden, np.float32), f"b{i}")]
        nodes += [
            helper.make_node("Conv", [prev, f"w{i}", f"b{i}"], [f"c{i}"], pads=[1, 1, 1, 1], kernel_shape=[3, 3]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"]),
            helper.make_node("MaxPool", [f"r{i}"], [f"p{i}"], kernel_shape=[2, 2], strides=[2, 2]),
        ]
        prev, c_in = f"p{i}", hidden
    nodes.append(helper.make_node("Flatten", [prev], ["embeddings"], axis=1))
    side = size
    for _ in range(4):
        side //= 2
    dim = hidden * side * side
    graph = helper.make_graph(
        nodes,
        "conv4",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", channels, size, size])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
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
            "polarity": "light_on_dark",
            "auto_polarity": True,
            "mean": [0.0],
            "std": [1.0],
        },
        "training": {"data": "none (random Conv-4 for benchmarks)"},
        "accuracy": {},
    }
    helper.set_model_props(model, {"edgemeta": json.dumps(meta)})
    onnx.save(model, str(path))
    return path
