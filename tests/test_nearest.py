"""runtime/nearest.py, the one home of nearest-prototype math, and the places that must agree with it:
the baked classifier graph (export/bake.py builds it as ONNX nodes) and the training loss (torch)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_torch

from edgemeta.runtime import nearest


def _points(seed: int, n: int, c: int, d: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """queries float32 [n, d] and prototypes float32 [c, d], off the origin so that lengths matter."""
    rng = np.random.default_rng(seed)
    return ((rng.standard_normal((n, d)) + 2).astype(np.float32), (rng.standard_normal((c, d)) + 2).astype(np.float32))


def _direct(q: np.ndarray, p: np.ndarray) -> np.ndarray:
    """float64 [N, C] sum of squared differences, the definition."""
    return ((q.astype(np.float64)[:, None] - p.astype(np.float64)[None]) ** 2).sum(-1)


def test_squared_distances_match_the_definition() -> None:
    q, p = _points(0, 9, 7)
    d = nearest.squared_distances(q, p)
    assert d.dtype == np.float64 and d.shape == (9, 7)
    np.testing.assert_allclose(d, _direct(q, p), rtol=1e-12, atol=1e-9)
    cached = nearest.squared_distances(q, p, proto_sq=nearest.squared_norms(p.astype(np.float64)))
    assert np.array_equal(cached, d)
    assert np.all(nearest.squared_distances(p, p).diagonal() >= 0.0)  # cancellation never goes negative


def test_squared_distances_batched_and_in_float32() -> None:
    rng = np.random.default_rng(1)
    q = rng.standard_normal((3, 5, 8)).astype(np.float32)
    p = rng.standard_normal((3, 4, 8)).astype(np.float32)
    d = nearest.squared_distances(q, p, np.float32)
    assert d.dtype == np.float32 and d.shape == (3, 5, 4)
    for e in range(3):
        np.testing.assert_allclose(d[e], _direct(q[e], p[e]), rtol=1e-5, atol=1e-5)


def test_l2_normalize_and_metric() -> None:
    x = np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32)
    out = nearest.l2_normalize(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)  # an all-zero vector stays zero
    assert nearest.for_metric(x, "sqeuclidean") is x
    np.testing.assert_array_equal(nearest.for_metric(x, "cosine"), out)


def test_prototypes() -> None:
    rng = np.random.default_rng(2)
    support = rng.standard_normal((2, 3, 4, 5))  # [E, N, K, D]
    np.testing.assert_allclose(nearest.class_means(support), support.mean(axis=2))
    sums, counts = support[0].sum(axis=1), np.full(3, 4)
    protos = nearest.prototypes_from_sums(sums, counts)
    assert protos.dtype == np.float32
    np.testing.assert_allclose(protos, nearest.class_means(support[0]), rtol=1e-6)


def test_softmax_scores() -> None:
    q, p = _points(3, 6, 10)
    d = nearest.squared_distances(q, p)
    scores = nearest.softmax_scores(d)
    expected = np.exp(-d) / np.exp(-d).sum(1, keepdims=True)
    np.testing.assert_allclose(scores, expected, rtol=1e-9)
    best = nearest.top_k(d, 3)
    np.testing.assert_allclose(nearest.softmax_scores(d, best), np.take_along_axis(scores, best, axis=1), rtol=1e-12)
    far = nearest.softmax_scores(d + 1e6)  # exp(-1e6) underflows; the shift keeps the scores
    np.testing.assert_allclose(far, scores, rtol=1e-6)


@pytest.mark.parametrize("k", [1, 3, 10, 12])
def test_top_k_is_the_sorted_order(k: int) -> None:
    q, p = _points(4, 8, 10)
    d = nearest.squared_distances(q, p)
    order = nearest.top_k(d, k)
    assert order.shape == (8, min(k, 10))
    np.testing.assert_array_equal(order, np.argsort(d, axis=1)[:, :k])


def test_baked_head_computes_the_same_formula(tmp_path) -> None:
    """export/bake.py's ONNX nodes on a bare input == these functions on the same numbers."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    from edgemeta.export import bake

    q, p = _points(5, 7, 5)
    q[3] = 0.0  # the zero vector: normalization's floor
    for metric in ("sqeuclidean", "cosine"):
        graph = helper.make_graph([], "head", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 16])], [])
        if metric == "cosine":
            bake._add_l2_normalize(graph, "x", "embeddings", 17)
        else:
            graph.node.append(helper.make_node("Identity", ["x"], ["embeddings"]))
        limits = np.linspace(50.0, 90.0, len(p)).astype(np.float32)
        bake._add_head(graph, "embeddings", p, limits, 17)
        bake._set_outputs(graph, "embeddings", 16, len(p))
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        emb, dist, scores, best, accepted = sess.run(None, {"x": q})
        expected_emb = nearest.for_metric(q, metric)
        d = nearest.squared_distances(expected_emb, p)
        np.testing.assert_allclose(emb, expected_emb, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(dist, d, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(scores, nearest.softmax_scores(d), atol=1e-6)
        np.testing.assert_array_equal(best, nearest.top_k(d, 1)[:, 0])
        np.testing.assert_array_equal(accepted, d.min(axis=1) <= limits[best])
        assert onnx.checker.check_model(model) is None


@needs_torch
def test_loss_logits_are_minus_squared_distances() -> None:
    """train/loss.py computes the same distances in torch: logits == -squared_distances."""
    import torch

    from edgemeta.train.loss import episode_logits

    rng = np.random.default_rng(6)
    way, shot, query, dim = 4, 3, 2, 16
    emb = (rng.standard_normal((2, way, shot + query, dim)) + 1).astype(np.float32)  # [E, N, K + Q, D]
    logits, labels = episode_logits(torch.from_numpy(emb), shot)
    protos = nearest.class_means(emb[:, :, :shot])  # [E, N, D]
    queries = emb[:, :, shot:].reshape(2, way * query, dim)  # [E, N * Q, D]
    d = nearest.squared_distances(queries, protos)
    np.testing.assert_allclose(logits.numpy(), -d, rtol=1e-5, atol=1e-4)
    assert labels.tolist() == np.repeat(np.arange(way), query).tolist()
