"""The big index's batch product on onnxruntime (runtime/slab_product.py): the model it writes
without the onnx package, the product and slab minima it returns, and the index using it or,
where it cannot run, numpy, with the same predictions either way."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
from test_prediction_scale import prototypes_like_embeddings, queries_near, reference

from edgemeta.runtime import prototype_index
from edgemeta.runtime.errors import ModelError
from edgemeta.runtime.prototype_index import SLAB_PRODUCT_CLASSES, PrototypeIndex
from edgemeta.runtime.slab_product import SlabProduct, slab_product_model


def test_the_model_bytes_are_the_onnx_graph_they_claim():
    model = onnx.load_from_string(slab_product_model(65, 1024, 32))
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Reshape", "ReduceMin"]
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    matrix, shape = model.graph.initializer
    assert (matrix.name, list(matrix.dims), matrix.data_location) == ("matrix", [65, 1024], onnx.TensorProto.EXTERNAL)
    assert onnx.numpy_helper.to_array(shape).tolist() == [0, 32, 32]
    reduce_min = {a.name: onnx.helper.get_attribute_value(a) for a in model.graph.node[2].attribute}
    assert reduce_min == {"axes": [1], "keepdims": 0}
    matrix.ClearField("external_data")  # embedded, the same graph passes onnx's full check
    matrix.data_location = onnx.TensorProto.DEFAULT
    matrix.raw_data = np.zeros((65, 1024), np.float32).tobytes()
    onnx.checker.check_model(model, full_check=True)
    assert [d.dim_value for d in model.graph.output[1].type.tensor_type.shape.dim][1:] == [32]


def test_product_and_minima_equal_numpys():
    rng = np.random.default_rng(0)
    matrix = rng.standard_normal((17, 32 * 50)).astype(np.float32)
    matrix[-1, -7:] = np.inf  # padding columns, as the index adds them
    queries = rng.standard_normal((5, 17)).astype(np.float32)
    work, minima = SlabProduct(matrix, 32)(queries)
    want = queries.astype(np.float64) @ matrix.astype(np.float64)
    np.testing.assert_allclose(work[:, :-7], want[:, :-7], rtol=1e-5, atol=1e-5)
    assert np.isinf(work[:, -7:]).all()
    np.testing.assert_array_equal(minima, work.reshape(5, 32, 50).min(axis=1))
    with pytest.raises(ValueError, match="multiple of slabs"):
        SlabProduct(matrix[:, :-1].copy(), 32)


@pytest.mark.parametrize("k", [1, 3])
def test_a_big_index_predicts_the_same_with_the_session_or_numpy(k):
    classes = SLAB_PRODUCT_CLASSES + 5  # not a whole number of slabs: padded
    sums, counts, protos = prototypes_like_embeddings(classes)
    index = PrototypeIndex.build(tuple(map(str, range(classes))), sums, counts)
    assert index.slab_product is not None
    assert index.centered_t.shape[1] % 32 == 0 and np.isinf(index.centered_t[-1, classes:]).all()
    queries = queries_near(protos, 12)
    found, by_numpy = index.search(queries, k), dataclasses.replace(index, slab_product=None).search(queries, k)
    best, dist, score = reference(queries, protos, k)
    for got in (found, by_numpy):
        np.testing.assert_array_equal(got.classes, best)
        np.testing.assert_allclose(got.score, score, rtol=0, atol=1e-6)
        np.testing.assert_allclose(got.distance, dist, rtol=1e-9, atol=1e-9)


def test_an_onnxruntime_that_cannot_run_it_leaves_the_product_to_numpy(monkeypatch):
    def refuse(*args, **kwargs):
        raise ModelError("no")

    monkeypatch.setattr(prototype_index, "SlabProduct", refuse)
    sums, counts, protos = prototypes_like_embeddings(SLAB_PRODUCT_CLASSES)
    index = PrototypeIndex.build(tuple(map(str, range(SLAB_PRODUCT_CLASSES))), sums, counts)
    assert index.slab_product is None
    queries = queries_near(protos, 4)
    np.testing.assert_array_equal(index.search(queries, 1).classes, reference(queries, protos, 1)[0])


def test_a_product_less_exact_than_float32_is_refused(monkeypatch):
    def rounded(self, queries):  # as a bfloat16 fast-math mode would give
        work = (queries @ self.matrix).astype(np.float16).astype(np.float32)
        return work, work.reshape(len(work), 32, -1).min(axis=1)

    monkeypatch.setattr(SlabProduct, "__call__", rounded)
    matrix = np.random.default_rng(1).standard_normal((9, 32 * 8)).astype(np.float32)
    with pytest.raises(ModelError, match="not exact enough"):
        SlabProduct(matrix, 32)
