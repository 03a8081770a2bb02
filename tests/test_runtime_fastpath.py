"""The batch-1 fast paths (bound buffers, single-image polarity and prediction) give exactly
what the general batched paths give."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from edgemeta.runtime import EmbeddingModel, FewShotClassifier
from edgemeta.runtime import binding as binding_module
from edgemeta.runtime.preprocess import PreprocessSpec, fix_polarity
from tiny_models import class_batch, linear_model, metadata

SIZE = 8


@pytest.fixture
def model(tmp_path):
    rng = np.random.default_rng(7)
    return EmbeddingModel(linear_model(tmp_path / "m.onnx", rng.standard_normal((SIZE * SIZE, 6)), size=SIZE))


def _random_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, SIZE, SIZE), dtype=np.uint8)


def test_bound_single_image_embedding_equals_the_plain_run(model):
    images = _random_images(20)
    batched = model.embed(images)  # batch > 1: the plain session.run path
    singles = np.concatenate([model.embed(img) for img in images])  # batch 1: the bound buffers
    np.testing.assert_allclose(singles, batched, rtol=1e-6, atol=1e-6)
    first = model.embed(images[0])
    model.embed(images[1])
    np.testing.assert_array_equal(first, model.embed(images[0]))  # results are copies, not the buffer


@pytest.mark.parametrize("polarity", ["light_on_dark", "dark_on_light"])
def test_single_image_polarity_decides_as_the_batch_does(polarity):
    spec = PreprocessSpec(size=(SIZE, SIZE), polarity=polarity)
    images = _random_images(200, seed=1)[..., None]
    # Borders right at the threshold (mean 127.5) and one step either side.
    for i, value in enumerate((127, 128, 255, 0)):
        images[i] = value
        images[i, 0, 0] = 128 if value == 127 else images[i, 0, 0]
    batch = fix_polarity(images, spec)
    singles = np.concatenate([fix_polarity(img[None], spec) for img in images])
    np.testing.assert_array_equal(singles, batch)


def test_single_predictions_equal_batched_ones(model):
    clf = FewShotClassifier(model)
    for k in range(7):
        clf.enroll(f"c{k}", class_batch(k, 3, size=SIZE))
    queries = np.concatenate([class_batch(k, 2, seed=5, size=SIZE) for k in range(7)])
    for top_k in (1, 3, 10):
        batched = clf.predict(queries, top_k=top_k)
        for query, expected in zip(queries, batched):
            (got,) = clf.predict(query, top_k=top_k)
            assert [p.label for p in got] == [p.label for p in expected]
            np.testing.assert_allclose([p.score for p in got], [p.score for p in expected], rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose([p.distance for p in got], [p.distance for p in expected], rtol=1e-5)


def test_threads_each_get_their_own_buffers(model):
    clf = FewShotClassifier(model)
    for k in range(5):
        clf.enroll(f"c{k}", class_batch(k, 3, size=SIZE))
    queries = _random_images(64, seed=3)
    expected = [clf.predict(q)[0][0] for q in queries]
    failures: list[str] = []

    def worker(offset: int) -> None:
        for i in range(200):
            j = (i * 7 + offset) % len(queries)
            got = clf.predict(queries[j])[0][0]
            if got.label != expected[j].label or abs(got.score - expected[j].score) > 1e-9:
                failures.append(f"thread {offset} query {j}: {got} != {expected[j]}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]


def test_a_model_that_cannot_run_bound_falls_back_for_good(tmp_path, monkeypatch):
    class Broken(binding_module.SingleImageBinding):
        def run(self) -> np.ndarray:
            raise RuntimeError("cannot bind")

    monkeypatch.setattr("edgemeta.runtime.model.SingleImageBinding", Broken)
    path = linear_model(tmp_path / "m.onnx", size=SIZE, meta=metadata(SIZE * SIZE, SIZE))
    model = EmbeddingModel(path)
    image = _random_images(1)[0]
    np.testing.assert_allclose(model.embed(image), model.embed(np.stack([image, image]))[:1], atol=1e-6)
    assert model._single.enabled is False
