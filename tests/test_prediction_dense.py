"""Many classes all within a few nats of each query (unit vectors, as a cosine model makes): the
float32-candidate path falls back to float64 throughout and still equals the float64 formula."""

from __future__ import annotations

import numpy as np
import pytest
from test_prediction_scale import DIM, reference

from edgemeta.runtime.prototype_index import EXACT_CLASSES, PrototypeIndex


@pytest.mark.parametrize("k", [1, 3])
def test_unit_vectors_at_many_classes_equal_the_float64_formula(k, monkeypatch):
    rng = np.random.default_rng(7)
    classes = EXACT_CLASSES + 100
    protos = rng.standard_normal((classes, DIM))
    protos = (protos / np.linalg.norm(protos, axis=1, keepdims=True)).astype(np.float32)
    counts = rng.integers(1, 6, classes)
    index = PrototypeIndex.build(tuple(map(str, range(classes))), protos.astype(np.float64) * counts[:, None], counts)
    queries = rng.standard_normal((8, DIM))
    queries = (queries / np.linalg.norm(queries, axis=1, keepdims=True)).astype(np.float32)
    calls = []
    exact = PrototypeIndex._exact
    monkeypatch.setattr(PrototypeIndex, "_exact", lambda self, *a: calls.append(1) or exact(self, *a))
    found = index.search(queries, k)
    best, dist, score = reference(queries, index.prototypes, k)
    assert calls == [1]  # the dense case: every class is near every query
    np.testing.assert_array_equal(found.classes, best)
    np.testing.assert_allclose(found.score, score, rtol=0, atol=1e-6)
    np.testing.assert_allclose(found.distance, dist, rtol=1e-9, atol=1e-9)
