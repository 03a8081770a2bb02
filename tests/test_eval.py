"""Few-shot evaluation: episode sampling, scoring against the classifier, open set, ``edgemeta eval``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_models import class_batch, linear_model, metadata

from edgemeta.cli import main
from edgemeta.lab.evaluation import EpisodeSampler, EpisodeSpec, auroc, embed_all, evaluate, score_block
from edgemeta.runtime import DataError, EmbeddingModel, FewShotClassifier

N_CLASSES, PER_CLASS = 8, 6


@pytest.fixture
def model_path(tmp_path):
    return linear_model(tmp_path / "m.onnx")


@pytest.fixture
def tree(tmp_path):
    """A class-per-folder data set of separable synthetic drawings: 8 classes x 6 PNGs."""
    root = tmp_path / "data"
    for k in range(N_CLASSES):
        (root / f"c{k}").mkdir(parents=True)
        for i, img in enumerate(class_batch(k, PER_CLASS)):
            Image.fromarray(img).save(root / f"c{k}" / f"{i}.png")
    return root


def _targets(classes: int = 12, per_class: int = 10) -> np.ndarray:
    return np.repeat(np.arange(classes), per_class)


def test_episodes_are_valid_and_reproducible():
    targets = _targets()
    sampler = EpisodeSampler(targets, EpisodeSpec(way=5, shot=2, query=3, unknown=2))
    a = sampler.sample(np.random.default_rng(7), 40)
    b = sampler.sample(np.random.default_rng(7), 40)
    c = sampler.sample(np.random.default_rng(8), 40)
    assert a.support.shape == (40, 5, 2) and a.query.shape == (40, 7, 3) and a.classes.shape == (40, 7)
    for x, y in ((a.classes, b.classes), (a.support, b.support), (a.query, b.query)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.query, c.query)
    for e in range(40):
        assert len(set(a.classes[e])) == 7
        np.testing.assert_array_equal(targets[a.support[e]], np.repeat(a.classes[e, :5, None], 2, 1))
        np.testing.assert_array_equal(targets[a.query[e]], np.repeat(a.classes[e, :, None], 3, 1))
        used = np.concatenate([a.support[e].ravel(), a.query[e].ravel()])
        assert len(set(used)) == used.size


def test_classes_are_drawn_uniformly():
    sampler = EpisodeSampler(_targets(12), EpisodeSpec(way=3, shot=1, query=1))
    counts = np.bincount(sampler.sample(np.random.default_rng(0), 4000).classes.ravel(), minlength=12)
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()


def test_within_group_episodes_never_mix_groups():
    targets = _targets(15, 4)
    groups = ["a"] * 6 + ["b"] * 5 + ["c"] * 3 + ["d"] * 1
    spec = EpisodeSpec(way=3, shot=1, query=2, unknown=1, within_group=True)
    ep = EpisodeSampler(targets, spec, groups).sample(np.random.default_rng(1), 500)
    names = np.array(groups)[ep.classes]
    assert (names == names[:, :1]).all()
    assert set(names[:, 0]) == {"a", "b"}  # "c" and "d" have fewer than way + unknown classes
    share_a = (names[:, 0] == "a").mean()
    assert 0.45 < share_a < 0.65  # weighted by class count: 6 / 11


def test_sampler_errors():
    with pytest.raises(DataError, match="needs 6 classes"):
        EpisodeSampler(_targets(5), EpisodeSpec(way=5, shot=1, query=1, unknown=1))
    with pytest.raises(DataError, match="needs 12 examples per class"):
        EpisodeSampler(_targets(6, 10), EpisodeSpec(way=5, shot=2, query=10))
    with pytest.raises(DataError, match="alphabet"):
        EpisodeSampler(_targets(6), EpisodeSpec(way=5, shot=1, query=1, within_group=True), [""] * 6)
    with pytest.raises(DataError, match="no alphabet has 5"):
        EpisodeSampler(_targets(6), EpisodeSpec(way=5, shot=1, query=1, within_group=True), list("aaabbb"))


@pytest.mark.parametrize("metric", ["sqeuclidean", "cosine"])
def test_decisions_match_the_classifier(tmp_path, metric):
    """Episode arithmetic gives the classifier's answers, for noisy (non-separable) embeddings."""
    rng = np.random.default_rng(3)
    weights = rng.normal(size=(64, 6)).astype(np.float32)
    meta = metadata(6, metric=metric)
    model = EmbeddingModel(linear_model(tmp_path / "m.onnx", weights, meta=meta))
    images = model.prepare(rng.integers(0, 256, (60, 8, 8), dtype=np.uint8))
    targets = _targets(10, 6)
    emb = embed_all(model, images, batch_size=7)
    if metric == "cosine":
        emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    ep = EpisodeSampler(targets, EpisodeSpec(way=4, shot=2, query=3)).sample(np.random.default_rng(0), 5)
    correct, min_dist = score_block(emb, ep)
    for e in range(5):
        clf = FewShotClassifier(model)
        for i in range(4):
            clf.enroll(str(i), images[ep.support[e, i]])
        preds = clf.predict(images[ep.query[e].ravel()])
        expected = [p[0].label == str(i // 3) for i, p in enumerate(preds)]
        np.testing.assert_array_equal(correct[e], expected)
        np.testing.assert_allclose(min_dist[e], [p[0].distance for p in preds], rtol=1e-4, atol=1e-4)


def test_separable_model_scores_100_percent_with_zero_ci(model_path):
    model = EmbeddingModel(model_path)
    images = model.prepare(np.concatenate([class_batch(k, PER_CLASS) for k in range(N_CLASSES)]))
    emb = embed_all(model, images)
    result = evaluate(emb, _targets(N_CLASSES, PER_CLASS), EpisodeSpec(5, 1, 3, unknown=2), 200, seed=1, threshold=2.0)
    assert result.accuracy == 1.0 and result.ci95 == 0.0
    assert result.auroc == 1.0 and result.false_accept_rate == 0.0 and result.false_reject_rate == 0.0
    assert result.open_accuracy == 1.0 and result.open_ci95 == 0.0


def test_results_reproducible_by_seed_and_differ_across_seeds():
    rng = np.random.default_rng(0)
    targets = _targets(20, 10)
    emb = rng.normal(size=(200, 4)).astype(np.float32) + targets[:, None] * 0.3

    def run(seed):
        return evaluate(emb, targets, EpisodeSpec(5, 1, 5, unknown=1), 120, seed=seed, threshold=1.0)

    a, b, c = run(1), run(1), run(2)
    assert a == b
    assert a.accuracy != c.accuracy
    assert 0.2 < a.accuracy < 1.0 and a.ci95 > 0
    assert a.ci95 == pytest.approx(1.96 * 0.5 / np.sqrt(120), rel=1.0)


def test_auroc_matches_brute_force():
    rng = np.random.default_rng(5)
    known, unknown = rng.integers(0, 6, 40).astype(float), rng.integers(2, 9, 30).astype(float)
    brute = np.mean([(u > k) + 0.5 * (u == k) for u in unknown for k in known])
    assert auroc(known, unknown) == pytest.approx(brute)
    assert auroc(np.array([1.0, 2.0]), np.array([3.0])) == 1.0
    assert auroc(np.array([3.0]), np.array([1.0, 2.0])) == 0.0


def test_eval_cli_json(model_path, tree):
    args = [
        "eval",
        "--model",
        str(model_path),
        "--data",
        str(tree),
        "--way",
        "5",
        "--shot",
        "1",
        "--query",
        "3",
        "--episodes",
        "30",
        "--seed",
        "4",
        "--unknown",
        "2",
        "--threshold",
        "2",
        "--json",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["accuracy"] == 1.0 and report["ci95"] == 0.0
    assert (report["way"], report["shot"], report["query"], report["episodes"]) == (5, 1, 3, 30)
    assert report["auroc"] == 1.0 and report["false_accept_rate"] == 0.0
    assert report["model"] == str(model_path) and report["seed"] == 4 and report["classes"] == N_CLASSES
    readable = CliRunner().invoke(main, args[:-1])
    assert readable.exit_code == 0 and "accuracy 100.00% +- 0.00%" in readable.stdout


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--way", "9"], "needs 9 classes"),
        (["--shot", "4", "--query", "3"], "needs 7 examples per class"),
        (["--within-alphabet", "--query", "2"], "alphabet"),
        (["--split", "background"], "Omniglot"),
        (["--episodes", "0"], "episodes"),
    ],
)
def test_eval_cli_user_errors(model_path, tree, extra, message):
    result = CliRunner().invoke(main, ["eval", "--model", str(model_path), "--data", str(tree), *extra])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0]


def test_eval_cli_missing_model_and_data(tmp_path, model_path, tree):
    missing_model = CliRunner().invoke(main, ["eval", "--model", str(tmp_path / "no.onnx"), "--data", str(tree)])
    missing_data = CliRunner().invoke(main, ["eval", "--model", str(model_path), "--data", str(tmp_path / "none")])
    for result in (missing_model, missing_data):
        assert result.exit_code == 1 and result.stderr.startswith("Error: ") and "not found" in result.stderr


@pytest.mark.data
def test_within_alphabet_on_real_omniglot(data_dir):
    from edgemeta.lab.datasets import load_source
    from edgemeta.runtime import PreprocessSpec

    data = load_source(data_dir / "omniglot" / "images_evaluation.npz", PreprocessSpec(size=(8, 8)))
    spec = EpisodeSpec(way=20, shot=1, query=5, within_group=True)
    ep = EpisodeSampler(data.targets, spec, data.class_groups).sample(np.random.default_rng(0), 300)
    alphabets = np.array(data.class_groups)[ep.classes]
    assert (alphabets == alphabets[:, :1]).all()
    assert len(set(alphabets[:, 0])) > 5
