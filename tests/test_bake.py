"""edgemeta bake: plain onnxruntime on the baked classifier == FewShotClassifier.predict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.torch]


@pytest.fixture(scope="module", params=["sqeuclidean", "cosine"])
def setup(request, tmp_path_factory) -> tuple[Path, Path, object, np.ndarray]:
    """(model.onnx, store.npz, classifier, query images uint8 [N, 28, 28]) for one metric."""
    from test_export import make_checkpoint

    from edgemeta.export.pipeline import ExportOptions, run_export
    from edgemeta.export.validation_data import synthetic_images
    from edgemeta.runtime import EmbeddingModel
    from edgemeta.runtime.classifier import FewShotClassifier

    root = tmp_path_factory.mktemp(f"bake-{request.param}")
    model_path = root / "model.onnx"
    run_export(
        make_checkpoint(root / "c.pt", metric=request.param),
        ExportOptions(out=model_path, exporter="legacy", threshold=2.0, episodes=20),
    )
    model = EmbeddingModel(model_path)
    images, targets = synthetic_images(model.meta.preprocess, classes=6, per_class=5, seed=7)
    clf = FewShotClassifier(model)
    for c in range(6):
        clf.enroll(f"class {c} ✓", images[targets == c][:3])
    store = root / "store.npz"
    clf.save(store)
    return model_path, store, clf, images[:, :, :, 0]


def cli(*args):
    from click.testing import CliRunner

    from edgemeta.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_bake_round_trip(setup, tmp_path) -> None:
    import onnxruntime as ort

    from edgemeta.runtime.preprocess import normalize

    model_path, store, clf, images = setup
    out = tmp_path / "classifier.onnx"
    result = cli("bake", "--model", model_path, "--store", store, "--out", out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["classes"] == 6
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    labels = json.loads(meta["labels"])
    assert labels == clf.labels and json.loads(meta["edgemeta"])["metric"] == clf.model.meta.metric
    x = normalize(clf.model.prepare(images), clf.model.meta.preprocess)
    scores, best, dist, accepted = sess.run(["scores", "best_index", "distances", "accepted"], {"images": x})
    assert scores.shape == dist.shape == (len(x), 6) and best.dtype == np.int64
    expected = clf.predict(images, top_k=6)
    for row, s, b, d, a in zip(expected, scores, best, dist, accepted):
        assert labels[b] == row[0].label
        for p in row:
            j = labels.index(p.label)
            assert abs(s[j] - p.score) <= 1e-5
            assert abs(d[j] - p.distance) <= 1e-4 * max(1.0, p.distance)
        assert bool(a) == (row[0].distance <= 2.0)
    assert clf.classify(images) == [lab if ok else None for lab, ok in zip([labels[b] for b in best], accepted)]


def test_bake_errors(setup, tmp_path) -> None:
    model_path, store, _, _ = setup
    for args in (
        ["--model", model_path, "--store", tmp_path / "missing.npz", "--out", tmp_path / "c.onnx"],
        ["--model", tmp_path / "missing.onnx", "--store", store, "--out", tmp_path / "c.onnx"],
        ["--model", model_path, "--store", store, "--out", tmp_path / "nodir" / "c.onnx"],
    ):
        result = cli("bake", *args)
        assert result.exit_code == 1 and result.output.startswith("Error: "), result.output
        assert len(result.output.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []
