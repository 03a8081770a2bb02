"""The rejection rule (runtime/rejection.py): one decision everywhere.

For one store (classes of 1, 2 and 4 shots) and one set of queries, ``classify`` (CLI), the Python
API, the baked ONNX classifier's ``accepted`` output, the demo's and ``eval --unknown``'s decision
paths all accept and reject the same images; and the metadata section round-trips and is checked.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_models import class_batch, linear_model, metadata

from edgemeta.cli import main
from edgemeta.runtime import (
    EdgemetaError,
    EmbeddingModel,
    FewShotClassifier,
    ModelError,
)
from edgemeta.runtime.preprocess import support_offsets
from edgemeta.runtime.rejection import OperatingPoint, RejectionRule, operating_point

SHOTS = {"c0": 1, "c1": 2, "c2": 4}
BETA, GAMMA = 1.0, 0.3


def _queries() -> np.ndarray:
    """uint8 [N, 8, 8]: drawings of the enrolled classes, of classes never enrolled, and blends of
    both, so that relative distances spread over a range."""
    known = np.concatenate([class_batch(k, 4, seed=9) for k in (0, 1, 2)])
    unknown = np.concatenate([class_batch(k, 4, seed=9) for k in (6, 9, 11)])
    blends = [
        ((1 - a) * known[i].astype(float) + a * unknown[i].astype(float)).astype(np.uint8)
        for i, a in zip(range(12), np.linspace(0.1, 0.9, 12))
    ]
    return np.concatenate([known, unknown, np.stack(blends)])


def _gap_tau(scores: np.ndarray) -> float:
    """A tau between two sorted normalized scores near the middle, with room on both sides so
    float32 (the baked graph) and float64 (the runtime) cannot decide differently."""
    s = np.sort(scores)
    gaps = [(i, s[i + 1] / s[i]) for i in range(len(s) // 4, 3 * len(s) // 4) if s[i + 1] / s[i] > 1.01]
    i = min(gaps, key=lambda g: abs(g[0] - len(s) / 2))[0]
    return float(np.sqrt(s[i] * s[i + 1]))


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(model path, store path, query image paths, queries) with a rule whose tau splits the queries."""
    root = tmp_path_factory.mktemp("rejection")
    plain = EmbeddingModel(linear_model(root / "plain.onnx"))
    clf = FewShotClassifier(plain)
    for k, (label, n) in enumerate(SHOTS.items()):
        clf.enroll(label, class_batch(k, n))
    queries = _queries()
    preds = clf.predict(queries)
    labels, protos = clf.prototypes()
    sq = {lab: float(np.dot(p.astype(np.float64), p.astype(np.float64))) for lab, p in zip(labels, protos)}
    unit = OperatingPoint(1.0, BETA, GAMMA, True)
    scores = np.array([p[0].distance / unit.limits(SHOTS[p[0].label], 3, sq[p[0].label]) for p in preds])
    tau = _gap_tau(scores)
    rule = RejectionRule(BETA, GAMMA, tau / 2, tau, ((0.01, tau / 2), (0.1, tau), (0.3, 2 * tau)))
    model_path = linear_model(root / "m.onnx", meta=metadata(64, rejection=rule.to_dict()))
    model = EmbeddingModel(model_path)
    store = root / "s.npz"
    clf = FewShotClassifier(model)
    for k, (label, n) in enumerate(SHOTS.items()):
        clf.enroll(label, class_batch(k, n))
    clf.save(store)
    paths = []
    for i, img in enumerate(queries):
        paths.append(root / f"q{i:02d}.png")
        Image.fromarray(img).save(paths[-1])
    return model_path, store, paths, queries


def test_every_path_decides_alike(setup, tmp_path) -> None:
    model_path, store, paths, queries = setup
    clf = FewShotClassifier.load(store, EmbeddingModel(model_path))
    python = [lab is not None for lab in clf.classify(queries)]
    assert 0 < sum(python) < len(python)  # the rule accepts some and rejects others
    nearest = [p[0].label for p in clf.predict(queries)]
    assert {lab for lab, ok in zip(nearest, python) if ok} >= {"c0", "c2"}  # 1-shot and 4-shot classes accepted

    preds, decided = clf.decide(queries, top_k=2)
    assert decided == python and [p[0].label for p in preds] == nearest
    res = CliRunner().invoke(
        main, ["classify", "--model", str(model_path), "--store", str(store), "--json", *map(str, paths)]
    )
    assert res.exit_code == 0, res.output
    assert [r["label"] is not None for r in json.loads(res.stdout)["results"]] == python
    assert _baked_accepts(model_path, store, queries, tmp_path) == python


def _baked_accepts(model_path: Path, store: Path, queries: np.ndarray, tmp_path: Path) -> list[bool]:
    pytest.importorskip("onnx")
    import onnxruntime as ort

    from edgemeta.export.bake import bake
    from edgemeta.runtime.preprocess import normalize

    model = EmbeddingModel(model_path)
    bake(model, store, tmp_path / "b.onnx")
    x = normalize(model.prepare(queries), model.meta.preprocess)
    sess = ort.InferenceSession(str(tmp_path / "b.onnx"), providers=["CPUExecutionProvider"])
    return [bool(a) for a in sess.run(["accepted"], {"images": x})[0]]


def test_demo_decides_as_classify(setup, monkeypatch) -> None:
    from edgemeta.commands import demo_cmd

    model_path, _, _, queries = setup
    model = EmbeddingModel(model_path)
    examples = {
        f"c{k}": [*class_batch(k, 2), *queries[4 * k : 4 * k + 4], *queries[12 + 4 * k : 16 + 4 * k]] for k in range(3)
    }
    monkeypatch.setattr(demo_cmd, "load_examples", lambda name: examples)
    monkeypatch.setitem(demo_cmd.SETS, "tiny", ("tiny", 2))
    rows = demo_cmd.run_set(model, "tiny", 2)["rows"]
    clf = FewShotClassifier(model)
    for label, images in examples.items():
        clf.enroll(label, images[:2])
    expected = clf.classify([img for images in examples.values() for img in images[2:]])
    assert [r["predicted"] for r in rows] == expected
    assert any(r["accepted"] for r in rows) and not all(r["accepted"] for r in rows)


@pytest.mark.parametrize("point", [{"reject": "strict"}, {"reject": "balanced"}, {"far": 0.3}])
def test_eval_decides_as_classify(setup, point) -> None:
    """``evaluate``'s false reject / accept rates equal those of classifiers enrolled with the same
    episodes' support images and asked about the same queries."""
    from edgemeta.lab.evaluation import EpisodeSampler, EpisodeSpec, evaluate

    model_path, _, _, _ = setup
    model = EmbeddingModel(model_path)
    rng = np.random.default_rng(3)
    # drawings smeared toward another class by up to half: classes overlap, so both errors occur
    images = np.concatenate(
        [
            (class_batch(k, 6, seed=3) * (1 - a) + class_batch((k + 3) % 8, 6, seed=4) * a).astype(np.uint8)
            for k in range(8)
            for a in [rng.uniform(0, 0.5, (6, 1, 1))]
        ]
    )
    targets = np.repeat(np.arange(8), 6)
    spec = EpisodeSpec(way=3, shot=2, query=4, unknown=3)
    op = operating_point(model.meta.rejection, None, **point)
    result = evaluate(
        model.embed(images),
        targets,
        spec,
        20,
        seed=4,
        rejection=op,
        support_emb=model.embed(images, views=support_offsets(model.meta.support_shift)),
    )
    ep = EpisodeSampler(targets, spec).sample(np.random.default_rng(4), 20)
    rejected_known, accepted_unknown = [], []
    for classes, support, query in zip(ep.classes, ep.support, ep.query):
        clf = FewShotClassifier(model)
        for c, rows in zip(classes[: spec.way], support):
            clf.enroll(str(c), images[rows])
        ok = [lab is not None for lab in clf.classify(images[query.ravel()], **point)]
        known = spec.way * spec.query
        rejected_known += [not a for a in ok[:known]]
        accepted_unknown += ok[known:]
    assert result.false_reject_rate == pytest.approx(np.mean(rejected_known), abs=1e-12)
    assert result.false_accept_rate == pytest.approx(np.mean(accepted_unknown), abs=1e-12)
    assert 0 < result.false_accept_rate + result.false_reject_rate  # the comparison saw both decisions


def test_operating_points(setup) -> None:
    model_path, store, _, queries = setup
    model = EmbeddingModel(model_path)
    rule = model.meta.rejection
    clf = FewShotClassifier.load(store, model)
    assert clf.operating_point().tau == rule.balanced
    assert clf.operating_point("strict").tau == rule.strict == operating_point(rule, None, far=0.01).tau
    assert operating_point(rule, None, far=0.1).tau == pytest.approx(rule.balanced)
    assert rule.balanced < operating_point(rule, None, far=0.2).tau < 2 * rule.balanced
    assert clf.classify(queries, reject="off") == [p[0].label for p in clf.predict(queries)]
    strict, balanced = clf.classify(queries, reject="strict"), clf.classify(queries)
    assert sum(x is None for x in strict) >= sum(x is None for x in balanced)
    huge = clf.classify(queries, threshold=1e9)  # an explicit squared distance for every class
    assert None not in huge
    for bad in (
        {"reject": "lenient"},
        {"far": 1.5},
        {"far": 0.0},
        {"reject": "strict", "far": 0.1},
        {"far": 0.5},
        {"threshold": 2.0, "reject": "off"},
    ):
        with pytest.raises(EdgemetaError):
            clf.classify(queries, **bad)


def test_legacy_threshold_and_no_rule(tmp_path) -> None:
    """Files with only the old ``threshold``: d <= threshold at strict and balanced, no --far."""
    legacy = EmbeddingModel(linear_model(tmp_path / "l.onnx", meta=metadata(64, threshold=2.5)))
    assert operating_point(legacy.meta.rejection, legacy.meta.threshold, "strict") == OperatingPoint(2.5, name="strict")
    assert operating_point(None, 2.5).limits([1, 5], 9, [10.0, 0.1]).tolist() == [2.5, 2.5]
    with pytest.raises(EdgemetaError, match="no false-accept calibration"):
        FewShotClassifier(legacy, far=0.05)
    none = operating_point(None, None)
    assert none.tau is None and none.accepts([1e30], 1, 1, 1.0).all()


def test_metadata_section_round_trip_and_checks() -> None:
    rule = RejectionRule(0.7, 0.1, 0.05, 0.1, ((0.01, 0.05), (0.1, 0.1)), {"data": "x"})
    assert RejectionRule.from_dict(json.loads(json.dumps(rule.to_dict()))) == rule
    bad = [
        {"version": 2},
        {"version": 1},
        {**rule.to_dict(), "shot_coef": -1},
        {**rule.to_dict(), "tau": {"strict": 0.05, "balanced": float("nan")}},
        {**rule.to_dict(), "far_table": [[0.1, 0.1], [0.01, 0.05]]},
        "not an object",
    ]
    for section in bad:
        with pytest.raises(ModelError):
            RejectionRule.from_dict(section)


def test_calibration_on_clusters() -> None:
    """On Gaussian clusters the fitted rule grows with fewer shots, orders its taus, and its balanced
    point has false rejects about equal to false accepts on the calibration episodes."""
    from edgemeta.export.threshold import calibrate_rejection

    rng = np.random.default_rng(0)
    centers = rng.normal(3.0, 1.0, (60, 16))
    emb = (np.repeat(centers, 12, axis=0) + rng.normal(0, 0.6, (720, 16))).astype(np.float32)
    targets = np.repeat(np.arange(60), 12)
    rule, how = calibrate_rejection(emb, targets, "sqeuclidean", episodes=60)
    assert rule is not None and rule.shot_coef > 0 and rule.class_coef >= 0
    assert 0 < rule.strict < rule.balanced
    taus = [t for _, t in rule.far_table]
    assert taus == sorted(taus) and RejectionRule.from_dict(rule.to_dict()) == rule
    kinds = how["kinds"]
    assert {(k["way"], k["shot"]) for k in kinds} == {(w, s) for w in (5, 20) for s in (1, 2, 5)}
    assert abs(np.mean([k["balanced_frr"] - k["balanced_far"] for k in kinds])) < 0.02
    assert np.mean([k["strict_far"] for k in kinds]) <= 0.012  # 1% by construction (rounding at the limit aside)
    assert calibrate_rejection(emb[:24], targets[:24], "sqeuclidean")[0] is None  # 2 classes: no episodes


def test_rewrite_metadata_keeps_stores_loadable(tmp_path) -> None:
    pytest.importorskip("onnx")
    from dataclasses import replace

    from edgemeta.export.model_files import rewrite_metadata

    path = linear_model(tmp_path / "m.onnx")
    old = EmbeddingModel(path)
    clf = FewShotClassifier(old)
    clf.enroll("c0", class_batch(0, 2))
    clf.save(tmp_path / "s.npz")
    rule = RejectionRule(0.5, 0.1, 0.05, 0.1)
    new_fingerprint = rewrite_metadata(path, lambda m: replace(m, rejection=rule))
    new = EmbeddingModel(path)
    assert new.fingerprint == new_fingerprint != old.fingerprint
    assert new.meta.rejection == rule and old.fingerprint in new.meta.equivalent_fingerprints
    loaded = FewShotClassifier.load(tmp_path / "s.npz", new)
    assert loaded.predict(class_batch(0, 1))[0][0].distance == clf.predict(class_batch(0, 1))[0][0].distance
    assert rewrite_metadata(path, lambda m: m) == new_fingerprint  # nothing to change: the file stays


@pytest.mark.data
def test_shipped_default_model_rejects_unknown_alphabets(data_dir) -> None:
    """Bounds a few points above the model card's figures (4.6% false rejects, 2.3% false accepts
    at 1000 episodes): they catch a missing or stale calibration, not a tenth of a point."""
    from edgemeta.runtime import default_model_path

    assert EmbeddingModel(default_model_path()).meta.rejection is not None
    res = CliRunner().invoke(
        main,
        [
            "eval",
            "--data",
            str(data_dir / "omniglot"),
            "--split",
            "evaluation",
            "--way",
            "5",
            "--shot",
            "5",
            "--unknown",
            "5",
            "--episodes",
            "200",
            "--seed",
            "1",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["rejection"]["reject"] == "balanced" and r["false_reject_rate"] <= 0.08 and r["false_accept_rate"] <= 0.05


@pytest.mark.data
def test_recalibrating_the_shipped_model_reproduces_its_rule(data_dir, tmp_path) -> None:
    pytest.importorskip("onnx")
    import shutil
    from dataclasses import replace

    from edgemeta.export.recalibrate import recalibrate
    from edgemeta.runtime import default_model_path

    copy = tmp_path / "default.onnx"
    shutil.copy(default_model_path(), copy)
    report = recalibrate(copy, str(data_dir / "omniglot"))
    assert report["calibration"]["held_out"].startswith("4 group(s) held out from training")
    new, shipped = EmbeddingModel(copy).meta.rejection, EmbeddingModel(default_model_path()).meta.rejection
    assert new is not None and shipped is not None
    same_place = {**new.calibration, "data": shipped.calibration["data"]}  # the data path as spelt here
    assert replace(new, calibration=same_place) == shipped
