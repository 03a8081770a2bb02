"""FewShotClassifier: known answers, shots, save/load, rejection, threads."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from tiny_models import SIZE, class_batch, class_image, linear_model, metadata

from edgemeta.runtime import EdgemetaError, EmbeddingModel, FewShotClassifier, StoreError


@pytest.fixture
def model(tmp_path):
    return EmbeddingModel(linear_model(tmp_path / "m.onnx"))


@pytest.fixture
def clf(model):
    c = FewShotClassifier(model)
    for k in range(4):
        c.enroll(f"class{k}", class_batch(k, 3))
    return c


def test_known_answers_and_top_k_order(clf):
    queries = np.stack([class_image(k) for k in range(4)])
    preds = clf.predict(queries, top_k=3)
    assert [p[0].label for p in preds] == ["class0", "class1", "class2", "class3"]
    for row in preds:
        assert len(row) == 3
        assert [p.distance for p in row] == sorted(p.distance for p in row)
        assert row[0].score > row[1].score >= row[2].score
    assert clf.classify(queries) == ["class0", "class1", "class2", "class3"]


def test_scores_are_softmax_of_negative_squared_distance(clf, model):
    q = class_image(2)[None]
    emb = model.embed(q)[0].astype(np.float64)
    labels, protos = clf.prototypes()
    d = ((protos.astype(np.float64) - emb) ** 2).sum(1)
    expected = np.exp(-(d - d.min())) / np.exp(-(d - d.min())).sum()
    row = clf.predict(q, top_k=len(labels))[0]
    got = {p.label: (p.score, p.distance) for p in row}
    for i, lab in enumerate(labels):
        assert got[lab][1] == pytest.approx(d[i], rel=1e-4, abs=1e-3)
        assert got[lab][0] == pytest.approx(expected[i], rel=1e-4, abs=1e-6)


def test_more_shots_move_prototype_to_mean_of_all(model):
    c = FewShotClassifier(model)
    first, second = class_batch(1, 2, seed=1), class_batch(1, 5, seed=2)
    assert c.enroll("a", first) == 2
    assert c.enroll("a", second) == 7
    all_emb = model.embed(np.concatenate([first, second]))
    _, protos = c.prototypes()
    np.testing.assert_allclose(protos[0], all_emb.mean(0), rtol=1e-5, atol=1e-5)


def test_remove_and_labels(clf):
    clf.remove("class1")
    assert clf.labels == ["class0", "class3", "class2"] or sorted(clf.labels) == ["class0", "class2", "class3"]
    assert clf.classify(class_image(3)[None]) == ["class3"]
    with pytest.raises(EdgemetaError):
        clf.remove("class1")


def test_save_load_round_trip_identical(clf, model, tmp_path):
    path = tmp_path / "store.npz"
    clf.save(path)
    again = FewShotClassifier.load(path, model)
    q = np.concatenate([class_batch(k, 2, seed=9) for k in range(4)])
    assert again.labels == clf.labels and again.counts() == clf.counts()
    assert again.predict(q, top_k=4) == clf.predict(q, top_k=4)
    if os.name == "posix":
        assert path.stat().st_mode & 0o777 == 0o644  # readable like any saved file, not mkstemp's 0600


def test_store_of_another_model_refused(clf, tmp_path):
    path = tmp_path / "store.npz"
    clf.save(path)
    other = EmbeddingModel(linear_model(tmp_path / "other.onnx", weights=2 * np.eye(SIZE * SIZE)))
    with pytest.raises(StoreError, match="another model"):
        FewShotClassifier.load(path, other)


def test_rejection_from_caller_and_from_metadata(clf, tmp_path):
    far = np.full((1, SIZE, SIZE), 0, np.uint8)
    far[0, 4:, 4:] = 255
    assert clf.classify(far, threshold=1.0) == [None]
    assert clf.classify(class_image(0)[None], threshold=1e6) == ["class0"]
    meta = metadata(SIZE * SIZE, threshold=1.0)
    strict = FewShotClassifier(EmbeddingModel(linear_model(tmp_path / "t.onnx", meta=meta)))
    strict.enroll("class0", class_batch(0, 3))
    assert strict.classify(far) == [None]


def test_many_classes_in_one_matrix_product(model):
    c = FewShotClassifier(model)
    rng = np.random.default_rng(0)
    for k in range(2000):
        c.add_embeddings(f"c{k}", rng.normal(size=SIZE * SIZE), 1)
    labels, d = c.distances(class_batch(0, 3))
    assert d.shape == (3, 2000) and len(labels) == 2000
    assert len(c.predict(class_batch(0, 3), top_k=5)[0]) == 5


def test_threads_enroll_and_predict_concurrently(model):
    c = FewShotClassifier(model)
    c.enroll("class0", class_batch(0, 2))
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            for i in range(30):
                c.enroll(f"class{k % 4}", class_batch(k % 4, 1, seed=i))
                preds = c.predict(class_image(0)[None], top_k=1)
                assert preds[0][0].label == "class0"
        except BaseException as e:  # collected and re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sum(c.counts().values()) == 2 + 8 * 30


def test_session_spin_setting_and_bad_values(tmp_path):
    path = linear_model(tmp_path / "m.onnx")
    entry = lambda m, key: m.session.get_session_options().get_session_config_entry(key)  # noqa: E731
    assert entry(EmbeddingModel(path), "session.intra_op.spin_duration_us") == "100"
    assert entry(EmbeddingModel(path, spin_us=2000), "session.intra_op.spin_duration_us") == "2000"
    assert entry(EmbeddingModel(path, spin_us=0), "session.intra_op.allow_spinning") == "0"
    with pytest.raises(RuntimeError, match="does not have configuration"):  # None: onnxruntime's own default
        entry(EmbeddingModel(path, spin_us=None), "session.intra_op.spin_duration_us")
    reference = EmbeddingModel(path, spin_us=0).embed(class_batch(0, 3))
    assert np.array_equal(EmbeddingModel(path).embed(class_batch(0, 3)), reference)
    for bad in ({"spin_us": -1}, {"spin_us": 1.5}, {"spin_us": True}, {"threads": 0}, {"threads": "2"}):
        with pytest.raises(EdgemetaError, match="must be an integer"):
            EmbeddingModel(path, **bad)
