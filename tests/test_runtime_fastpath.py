"""The batch-1 fast paths (bound buffers, single-image polarity and prediction) give exactly
what the general batched paths give."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from tiny_models import class_batch, linear_model, metadata

from edgemeta.runtime import EmbeddingModel, FewShotClassifier
from edgemeta.runtime import binding as binding_module
from edgemeta.runtime.preprocess import Normalizer, OneGrayImage, PreprocessSpec, fix_polarity, normalize, prepare_uint8

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
    # The public session (what benchmarks time as the bare call) is the one the runtime runs.
    x = normalize(model.prepare(images), model.meta.preprocess)
    bare = model.session.run([model.meta.output_name], {model.meta.input_name: x})[0]
    np.testing.assert_allclose(bare, batched, rtol=1e-6, atol=1e-6)


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


def _threshold_images(n: int) -> np.ndarray:
    """uint8 [n, SIZE, SIZE]: random images, the first four with borders at and around mid-gray."""
    images = _random_images(n, seed=2)
    for i, value in enumerate((127, 128, 255, 0)):
        images[i] = value
        images[i, 0, 0] = 128 if value == 127 else images[i, 0, 0]
    return images


@pytest.mark.parametrize(
    "polarity,auto", [("light_on_dark", True), ("dark_on_light", True), ("light_on_dark", False), ("none", True)]
)
@pytest.mark.parametrize("mean,std", [(0.0, 1.0), (0.45, 0.27)])
def test_one_gray_image_input_is_bit_identical_to_the_general_preprocessing(polarity, auto, mean, std):
    spec = PreprocessSpec(size=(SIZE, SIZE), polarity=polarity, auto_polarity=auto, mean=(mean,), std=(std,))
    one = OneGrayImage(spec)
    out = np.empty(SIZE * SIZE, dtype=np.float32)
    for image in _threshold_images(60):
        expected = normalize(prepare_uint8(image, spec), spec).reshape(-1)
        for shaped in (image, image[None], image[..., None], image[None, ..., None], image.T.copy().T):
            assert one.accepts(shaped)
            out[:] = np.nan
            one.normalize_into(shaped, out)
            np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize(
    "channels,mean,std", [(1, (0.0,), (1.0,)), (1, (0.45,), (0.27,)), (3, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]
)
def test_the_normalizer_is_bit_identical_to_normalize(channels, mean, std):
    spec = PreprocessSpec(size=(12, 9), channels=channels, polarity="none", mean=mean, std=std)
    rng = np.random.default_rng(channels)
    batch = rng.integers(0, 256, (5, 12, 9, channels), dtype=np.uint8)
    for channel in range(channels):  # every level in every channel
        batch[..., channel].flat[:256] = np.arange(256)
    expected = normalize(batch, spec)
    normalizer = Normalizer(spec)
    np.testing.assert_array_equal(normalizer(batch), expected)
    out = np.full((5, channels, 12, 9), np.nan, dtype=np.float32)
    assert normalizer(batch, out=out) is out
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(normalizer(batch[::2]), expected[::2])  # a strided view of the batch


def test_one_gray_image_leaves_every_other_input_to_the_general_path():
    one = OneGrayImage(PreprocessSpec(size=(SIZE, SIZE)))
    image = _random_images(1)[0]
    others = [
        image.astype(np.float32) / 255,
        image.astype(np.uint16),
        image[:-1],
        np.stack([image, image]),
        np.repeat(image[..., None], 3, axis=2),
        [image],
        image.tolist(),
    ]
    assert not any(one.accepts(x) for x in others)
    assert not OneGrayImage(
        PreprocessSpec(size=(SIZE, SIZE), channels=3, polarity="none", mean=(0.0,) * 3, std=(1.0,) * 3)
    ).accepts(image)


@pytest.mark.parametrize("classes", [7, 30])
def test_single_predictions_equal_batched_ones(model, classes):
    clf = FewShotClassifier(model)
    for k in range(classes):
        clf.enroll(f"c{k}", class_batch(k, 3, size=SIZE))
    queries = np.concatenate([class_batch(k, 2, seed=5, size=SIZE) for k in range(classes)])
    for top_k in (1, 3, 10):
        batched = clf.predict(queries, top_k=top_k)
        for query, expected in zip(queries, batched):
            (got,) = clf.predict(query, top_k=top_k)
            assert [p.label for p in got] == [p.label for p in expected]
            np.testing.assert_allclose([p.score for p in got], [p.score for p in expected], rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose([p.distance for p in got], [p.distance for p in expected], rtol=1e-9)


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


def test_a_color_model_takes_the_general_path_for_single_images(tmp_path):
    path = linear_model(
        tmp_path / "rgb.onnx", np.random.default_rng(0).standard_normal((3 * SIZE * SIZE, 5)), channels=3
    )
    model = EmbeddingModel(path)
    images = np.random.default_rng(1).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    singles = np.concatenate([model.embed(img) for img in images])
    np.testing.assert_allclose(singles, model.embed(images), rtol=1e-6, atol=1e-6)
    clf = FewShotClassifier(model)
    clf.enroll("a", images[:2])
    clf.enroll("b", images[2:])
    assert [clf.predict(img)[0][0].label for img in images] == ["a", "a", "b", "b"]
