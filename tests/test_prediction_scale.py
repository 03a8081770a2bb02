"""Predictions at any number of classes equal the plain float64 formula (scores within 1e-6, the same
top-k), through the exact path, the float32-candidate path beyond ``EXACT_CLASSES`` and the batch-1
fast path; a big store loads in bulk to the same classifier; arrays never load Pillow."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import SIZE, linear_model

from edgemeta.cli import main
from edgemeta.runtime import EmbeddingModel, FewShotClassifier, fastpath, prototype_index
from edgemeta.runtime.prototype_index import EXACT_CLASSES, PrototypeIndex
from edgemeta.runtime.store import StoreContents, write_store

DIM = 16


def reference(queries: np.ndarray, protos: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Plain float64: top-k indices, squared distances and softmax(-d) scores, [N, k] each."""
    q, p = queries.astype(np.float64), protos.astype(np.float64)
    d = np.maximum((q * q).sum(1)[:, None] + (p * p).sum(1)[None, :] - 2.0 * q @ p.T, 0.0)
    w = np.exp(d.min(axis=1, keepdims=True) - d)
    best = np.argsort(d, axis=1, kind="stable")[:, :k]
    return best, np.take_along_axis(d, best, 1), np.take_along_axis(w / w.sum(1, keepdims=True), best, 1)


def prototypes_like_embeddings(classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """sums float64 [C, DIM], counts int64 [C] and the prototypes float32 [C, DIM]: a large common
    offset (like ReLU features, the case float32 cancels worst in), near-duplicate pairs of classes."""
    rng = np.random.default_rng(seed)
    protos = (5.0 + rng.standard_normal((classes, DIM))).astype(np.float32)
    protos[1::2][: classes // 4] = protos[0::2][: classes // 4] + 1e-3 * rng.standard_normal((classes // 4, DIM))
    counts = rng.integers(1, 6, classes)
    sums = protos.astype(np.float64) * counts[:, None]
    return sums, counts, (sums / counts[:, None]).astype(np.float32)


def clustered_prototypes(classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """As ``prototypes_like_embeddings``, but in groups of 20 classes a few units apart around
    centers hundreds of units from the origin: float32 cannot rank a group's classes, and the
    classes behind the nearest carry much of the softmax."""
    rng = np.random.default_rng(seed)
    centers = 300.0 * rng.standard_normal((-(-classes // 20), DIM))
    protos = (np.repeat(centers, 20, axis=0)[:classes] + 0.3 * rng.standard_normal((classes, DIM))).astype(np.float32)
    counts = rng.integers(1, 6, classes)
    sums = protos.astype(np.float64) * counts[:, None]
    return sums, counts, (sums / counts[:, None]).astype(np.float32)


def queries_near(protos: np.ndarray, n: int, seed: int = 1) -> np.ndarray:
    """float32 [n, DIM]: some queries close to a prototype (one dominant class, a near tie with its
    duplicate), some between several (scores spread over many classes)."""
    rng = np.random.default_rng(seed)
    picks = protos[rng.integers(0, len(protos), n)]
    spread = np.where(np.arange(n)[:, None] % 2 == 0, 0.05, 0.7)
    return (picks + spread * rng.standard_normal((n, DIM))).astype(np.float32)


@pytest.mark.parametrize("classes", [3, 1000, EXACT_CLASSES + 1, 100_000])
@pytest.mark.parametrize("k", [1, 5])
@pytest.mark.parametrize("make", [prototypes_like_embeddings, clustered_prototypes])
@pytest.mark.parametrize("n", [1, 40])  # at 1,000 classes: 1 query float64 throughout, 40 the float32 candidates
def test_search_equals_the_float64_formula(classes, k, make, n):
    sums, counts, protos = make(classes)
    index = PrototypeIndex.build(tuple(map(str, range(classes))), sums, counts)
    queries = queries_near(protos, n)
    found = index.search(queries, k)
    best, dist, score = reference(queries, protos, min(k, classes))
    np.testing.assert_array_equal(found.classes, best)
    np.testing.assert_allclose(found.score, score, rtol=0, atol=1e-6)
    np.testing.assert_allclose(found.distance, dist, rtol=1e-9, atol=1e-9)
    assert n == 1 or score[:, 0].max() > 0.4  # some queries have a dominant class: scores tested where they are large


def two_passes(work: np.ndarray, tol: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The plain definition of the entries that matter: every entry at or below its row's limit."""
    low = work.min(axis=1)
    kth = np.sort(work, axis=1)[:, k - 1]
    limit, exact_below = prototype_index._limits(low, kth, tol, work.shape[1])
    return np.flatnonzero(work <= limit[:, None]), exact_below


@pytest.mark.parametrize("columns", [32 * 700, 32 * 700 + 31, 100_003])
@pytest.mark.parametrize("k", [1, 3, 40])
def test_the_one_pass_filter_finds_what_two_passes_find(columns, k):
    rng = np.random.default_rng(k)
    work = (300 * rng.standard_normal((24, columns))).astype(np.float32)
    work[3, -1] = work[3].min() - 1  # a row's best class in the tail, another's in its last slab
    work[4, 32 * 700 - 1] = work[4].min() - 1
    tol = 0.01 * rng.random(24)
    got = prototype_index._entries_by_slabs(work, tol, k, columns)
    assert got is not None
    want = two_passes(work, tol, k)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert 24 * k <= got[0].size < work.size // 100  # few entries matter, and at least k per row


def test_the_one_pass_filter_gives_way_when_most_entries_matter():
    work = np.random.default_rng(0).random((20, 40_000), dtype=np.float32)  # all within a nat
    assert prototype_index._entries_by_slabs(work, np.full(20, 1e-3), 1, 40_000) is None
    flat, _ = prototype_index._entries_that_matter(work, np.full(20, 1e-3), 1, 40_000)
    assert flat.size == work.size


@pytest.mark.parametrize("k", [1, 4])
def test_fast_path_equals_the_general_path(k):
    sums, counts, protos = prototypes_like_embeddings(300)
    index = PrototypeIndex.build(tuple(map(str, range(300))), sums, counts)
    for query in queries_near(protos, 10):
        assert fastpath.applies(index, query[None])
        got = fastpath.nearest_one(index, query[None], k)
        found = index.search(query[None], k)
        assert [j for j, _, _ in got] == found.classes[0].tolist()
        np.testing.assert_allclose([s for _, s, _ in got], found.score[0], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose([d for _, _, d in got], found.distance[0], rtol=1e-9)


@pytest.fixture
def model(tmp_path) -> EmbeddingModel:
    weights = np.random.default_rng(3).standard_normal((SIZE * SIZE, DIM))
    return EmbeddingModel(linear_model(tmp_path / "m.onnx", weights))


def test_a_big_store_loads_in_bulk_to_what_enrolling_gives(tmp_path, model):
    classes = EXACT_CLASSES + 50
    sums, counts, protos = prototypes_like_embeddings(classes, seed=4)
    labels = [f"class {i}" for i in range(classes)]
    write_store(tmp_path / "s.npz", StoreContents(labels, sums, counts, model.fingerprint, model.meta.metric))
    loaded = FewShotClassifier.load(tmp_path / "s.npz", model)
    one_by_one = FewShotClassifier(model)
    for label, total, count in zip(labels, sums, counts):
        one_by_one.add_embeddings(label, total, int(count))
    assert loaded.labels == labels and loaded.counts() == one_by_one.counts()
    np.testing.assert_array_equal(loaded.prototypes()[1], one_by_one.prototypes()[1])
    images = np.random.default_rng(5).integers(0, 256, (9, SIZE, SIZE), dtype=np.uint8)
    assert loaded.predict(images, top_k=3) == one_by_one.predict(images, top_k=3)
    best, dist, score = reference(loaded.embed(images), protos, 3)
    preds = loaded.predict(images, top_k=3)
    assert [[p.label for p in row] for row in preds] == [[labels[j] for j in row] for row in best]
    np.testing.assert_allclose([[p.score for p in row] for row in preds], score, atol=1e-6)
    loaded.enroll("class 0", images[:1])  # still growable after the bulk load
    assert loaded.counts()["class 0"] == counts[0] + 1


def test_decide_accepts_from_the_snapshot_it_predicted_with(model):
    clf = FewShotClassifier(model, threshold=1e9)
    rng = np.random.default_rng(6)
    for k in range(4):
        clf.enroll(f"c{k}", rng.integers(0, 256, (2, SIZE, SIZE), dtype=np.uint8))
    images = rng.integers(0, 256, (5, SIZE, SIZE), dtype=np.uint8)
    preds, accepted = clf.decide(images, top_k=2)
    assert accepted == [True] * 5 and preds == clf.predict(images, top_k=2)
    tight = min(p[0].distance for p in preds)
    _, strict = clf.decide(images, threshold=tight)
    assert strict == [p[0].distance <= tight for p in preds] and strict.count(True) == 1


def test_predicting_on_arrays_never_imports_pillow(tmp_path, model):
    code = (
        "import sys, numpy as np\n"
        "from edgemeta.runtime import EmbeddingModel, FewShotClassifier\n"
        f"clf = FewShotClassifier(EmbeddingModel({str(model.path)!r}))\n"
        f"images = np.random.default_rng(0).integers(0, 256, (3, {SIZE}, {SIZE}), dtype=np.uint8)\n"
        "clf.enroll('a', images[:2]); clf.enroll('b', images[1:])\n"
        "clf.predict(images); clf.predict(images[0]); clf.predict(images[0].astype(np.float32) / 255)\n"
        "print(sorted(m for m in sys.modules if m == 'PIL' or m.startswith('PIL.')))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_bench_classes_rows(model):
    smoke = [
        "--iterations",
        "2",
        "--warmup",
        "1",
        "--rounds",
        "1",
        "--round-seconds",
        "0.001",
        "--batches",
        "2",
        "--cold-runs",
        "0",
        "--idle-runs",
        "0",
        "--model",
        str(model.path),
    ]
    result = CliRunner().invoke(main, ["bench", *smoke, "--classes", "3,40", "--json"])
    assert result.exit_code == 0, result.output
    scale = json.loads(result.stdout)["scale"]
    assert [r["classes"] for r in scale["rows"]] == [3, 40] and scale["batch"] == 64
    assert all(
        r["load_s"] > 0 and r["predict1_ms"] > 0 and r["predict64_ms"] > 0 and r["product64_ms"] > 0
        for r in scale["rows"]
    )
    assert scale["ratios"]["3"]["vs_fewest"] == 1.0
    table = CliRunner().invoke(main, ["bench", *smoke, "--classes", "5"])
    assert table.exit_code == 0 and "predict@64 ms" in table.stdout
