"""export/verify.py computes what the runtime computes: support embeddings through the runtime's own
view averaging, decisions by runtime/nearest.py (hermetic: a tiny linear model, no torch)."""

from __future__ import annotations

import numpy as np
from tiny_models import SIZE, class_batch, linear_model, metadata

from edgemeta.export import verify
from edgemeta.runtime import EmbeddingModel
from edgemeta.runtime.preprocess import support_offsets
from edgemeta.runtime.session import make_session


def test_export_embeds_support_as_the_runtime_does(tmp_path) -> None:
    path = linear_model(tmp_path / "m.onnx", meta=metadata(SIZE * SIZE, support_shift=1))
    model = EmbeddingModel(path)
    images = model.prepare(np.concatenate([class_batch(k, 3) for k in range(3)]))  # uint8 [9, H, W, 1]
    sess, spec = make_session(path.read_bytes()), model.meta.preprocess
    for shift in (0, 1, 2):
        got = verify.embed_onnx_support(sess, images, spec, shift)
        expected = model.embed_prepared(images, views=support_offsets(shift))
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert not np.allclose(verify.embed_onnx_support(sess, images, spec, 1), verify.embed_onnx(sess, images, spec))


def test_decisions_are_nearest_prototype_answers() -> None:
    rng = np.random.default_rng(0)
    targets = np.repeat(np.arange(8), 6)
    emb = (rng.standard_normal((len(targets), 12)) + targets[:, None] % 3).astype(np.float32)
    spec = verify.episode_spec(targets)
    for metric in ("sqeuclidean", "cosine"):
        got = verify.decisions(emb, targets, spec, 5, 3, metric)
        ep = verify.EpisodeSampler(targets, spec).sample(np.random.default_rng(3), 5)
        x = emb / np.linalg.norm(emb, axis=1, keepdims=True) if metric == "cosine" else emb
        for e in range(5):
            protos = x[ep.support[e]].mean(axis=1).astype(np.float64)  # [N, D]
            queries = x[ep.query[e].ravel()].astype(np.float64)  # [T, D]
            direct = ((queries[:, None] - protos[None]) ** 2).sum(-1)  # [T, N]
            np.testing.assert_array_equal(got[e], direct.argmin(axis=1))
        assert verify.same_decisions(emb, emb, targets, metric, 5).all()
