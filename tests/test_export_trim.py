"""Trimming convolution outputs that floor-mode pooling never reads (export/trim.py): same
outputs, smaller convolutions, nothing touched where it would not be safe; files rewritten in
place keep their prototype stores loadable."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from tiny_models import class_batch, metadata

from edgemeta.export.trim import main, trim_file, trim_unread_conv_outputs
from edgemeta.runtime import EmbeddingModel, FewShotClassifier, ModelError, StoreError, default_model_path
from edgemeta.runtime.errors import ExportError
from edgemeta.runtime.metadata import ModelMetadata

CH = 4


def conv_net(
    size: int = 7,
    between: tuple[str, ...] = ("Relu",),
    conv: dict | None = None,
    pool: dict | None = None,
    pool_op: str = "MaxPool",
    extra_reader: bool = False,
) -> onnx.ModelProto:
    """images [N, 1, size, size] -> Conv 3x3 (CH channels, pads 1) -> ``between`` ops -> 2x2 pool
    -> Flatten -> embeddings; ``extra_reader`` also makes the conv output a graph output."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((CH, 1, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(CH).astype(np.float32), "b"),
        numpy_helper.from_array(np.array(0.05, np.float32), "scale"),
        numpy_helper.from_array(np.array(128, np.uint8), "zero"),
    ]
    nodes = [
        helper.make_node(
            "Conv", ["images", "w", "b"], ["c"], kernel_shape=[3, 3], **({"pads": [1, 1, 1, 1]} | (conv or {}))
        )
    ]
    name = "c"
    for i, op in enumerate(between):
        inputs = [name, "scale", "zero"] if op in ("QuantizeLinear", "DequantizeLinear") else [name]
        nodes.append(helper.make_node(op, inputs, [f"t{i}"]))
        name = f"t{i}"
    nodes += [
        helper.make_node(pool_op, [name], ["p"], **({"kernel_shape": [2, 2], "strides": [2, 2]} | (pool or {}))),
        helper.make_node("Flatten", ["p"], ["embeddings"], axis=1),
    ]
    outputs = [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, None)]
    if extra_reader:
        outputs.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, None))
    graph = helper.make_graph(
        nodes, "t", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 1, size, size])], outputs, inits
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return onnx.shape_inference.infer_shapes(model)  # value_info for every tensor, as exporters write


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        ["embeddings"], {"images": x}
    )[0]


def conv_pads(model: onnx.ModelProto) -> list[int]:
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    return list(next(a for a in conv.attribute if a.name == "pads").ints)


X = np.random.default_rng(1).standard_normal((3, 1, 7, 7)).astype(np.float32)


@pytest.mark.parametrize(
    "between, pool, pool_op, pads",
    [
        (("Relu",), None, "MaxPool", [1, 1, 0, 0]),  # 7x7 -> pool reads 6 rows
        ((), None, "AveragePool", [1, 1, 0, 0]),
        (("QuantizeLinear", "DequantizeLinear"), None, "MaxPool", [1, 1, 0, 0]),  # an int8 (QDQ) file
        (("Relu",), {"strides": [3, 3]}, "MaxPool", [1, 1, 0, 0]),  # reads 5 of 7: only 1 of 2 unread rows is padding
    ],
)
def test_trim_keeps_outputs_and_drops_unread_rows(between, pool, pool_op, pads):
    model = conv_net(between=between, pool=pool, pool_op=pool_op)
    before = run(model, X)
    assert trim_unread_conv_outputs(model) == 1
    assert conv_pads(model) == pads
    onnx.checker.check_model(model, full_check=True)  # the stale 7x7 shapes were dropped
    np.testing.assert_array_equal(run(model, X), before)
    assert trim_unread_conv_outputs(model) == 0


@pytest.mark.parametrize(
    "case",
    [
        dict(size=8),  # even map: the pool reads every row
        dict(extra_reader=True),  # the full conv output is read elsewhere
        dict(pool={"ceil_mode": 1}),  # ceil mode reads the last row
        dict(pool={"pads": [0, 0, 1, 1]}),
        dict(conv={"strides": [2, 2]}, size=13),  # a 7x7 output, but strided
        dict(conv={"pads": [1, 1, 0, 0]}, size=8),  # nothing to lower
        dict(between=("Relu", "Transpose")),  # not a per-position op
    ],
)
def test_trim_leaves_what_it_cannot_prove(case):
    model = conv_net(**case)
    before = model.SerializeToString()
    assert trim_unread_conv_outputs(model) == 0
    assert model.SerializeToString() == before


def _model_file(path: Path, model: onnx.ModelProto) -> Path:
    size = model.graph.input[0].type.tensor_type.shape.dim[3].dim_value
    helper.set_model_props(model, {"edgemeta": json.dumps(metadata(CH * (size // 2) ** 2, size=size))})
    onnx.save(model, str(path))
    return path


def test_trim_file_in_place_keeps_stores_loadable(tmp_path, capsys):
    path = _model_file(tmp_path / "m.onnx", conv_net())
    old = EmbeddingModel(path)
    clf = FewShotClassifier(old)
    for k in range(3):
        clf.enroll(f"c{k}", class_batch(k, 2, size=7))
    clf.save(tmp_path / "store.npz")
    queries = class_batch(1, 4, seed=9, size=7)
    assert main([str(path)]) == 0
    assert "1 convolution(s) trimmed" in capsys.readouterr().out
    new = EmbeddingModel(path)
    assert new.fingerprint != old.fingerprint and new.meta.equivalent_fingerprints == (old.fingerprint,)
    np.testing.assert_array_equal(new.embed(queries), old.embed(queries))
    again = FewShotClassifier.load(tmp_path / "store.npz", new)
    assert again.classify(queries) == clf.classify(queries)
    assert main([str(path)]) == 0 and "nothing to trim" in capsys.readouterr().out
    assert EmbeddingModel(path).fingerprint == new.fingerprint


def test_store_of_an_unlisted_model_is_still_refused(tmp_path):
    other = _model_file(tmp_path / "other.onnx", conv_net(size=8))
    clf = FewShotClassifier(EmbeddingModel(other))
    clf.enroll("a", class_batch(0, 1, size=8))
    clf.save(tmp_path / "store.npz")
    path = _model_file(tmp_path / "m.onnx", conv_net())
    trim_file(path)
    with pytest.raises(StoreError, match="made with another model"):
        FewShotClassifier.load(tmp_path / "store.npz", EmbeddingModel(path))


def test_trim_file_refuses_a_changed_network_and_keeps_the_file(tmp_path, monkeypatch):
    path = _model_file(tmp_path / "m.onnx", conv_net())
    before = path.read_bytes()

    def trim_and_break(model):
        trim_unread_conv_outputs(model)
        model.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.zeros(CH, np.float32), "b"))
        return 1

    monkeypatch.setattr("edgemeta.export.trim.trim_unread_conv_outputs", trim_and_break)
    with pytest.raises(ExportError, match="changed its outputs"):
        trim_file(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["m.onnx"]


def test_trim_file_errors(tmp_path, capsys):
    assert main([str(tmp_path / "missing.onnx")]) == 1
    assert "model not found" in capsys.readouterr().err
    (tmp_path / "junk.onnx").write_bytes(b"not onnx")
    with pytest.raises(ExportError, match="not a valid ONNX model"):
        trim_file(tmp_path / "junk.onnx")
    assert main([]) == 2


def test_equivalent_fingerprints_metadata():
    good = "ab" * 32
    meta = ModelMetadata.from_json(json.dumps(metadata(4, equivalent_fingerprints=[good])))
    assert meta.equivalent_fingerprints == (good,)
    assert ModelMetadata.from_json(meta.to_json()) == meta
    assert "equivalent_fingerprints" not in ModelMetadata.from_json(json.dumps(metadata(4))).to_dict()
    for bad in ("ab" * 32, ["xyz"], [1]):
        with pytest.raises(ModelError, match="equivalent_fingerprints"):
            ModelMetadata.from_json(json.dumps(metadata(4, equivalent_fingerprints=bad)))


@pytest.mark.parametrize("name", ["default.onnx", "default.int8.onnx", "vinyals.onnx"])
def test_shipped_models_compute_no_unread_rows(name):
    path = default_model_path().parent / name
    if not path.is_file():
        pytest.skip(f"{name} is not built")
    assert trim_unread_conv_outputs(onnx.load(str(path))) == 0
