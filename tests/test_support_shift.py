"""Support shift: enrolled images embedded as the mean over their shifted views (hermetic)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import SIZE, class_batch, linear_model, metadata, write_class_folders

from edgemeta.cli import main
from edgemeta.lab.evaluation import EpisodeSpec, embed_all, embed_all_support, evaluate
from edgemeta.runtime import EmbeddingModel, FewShotClassifier
from edgemeta.runtime.errors import ModelError
from edgemeta.runtime.metadata import ModelMetadata
from edgemeta.runtime.preprocess import shift_offsets, shifted_views, support_offsets


def _model(tmp_path, shift: int) -> EmbeddingModel:
    path = linear_model(tmp_path / f"m{shift}.onnx", meta=metadata(SIZE * SIZE, support_shift=shift))
    return EmbeddingModel(path)


def test_views_grid_unshifted_first_and_edges_repeated():
    batch = np.zeros((2, 6, 7, 1), dtype=np.uint8)
    batch[0, 2, 3] = 200  # ink on a dark background
    batch[1] = 255  # dark ink on white paper: the paper must stay white
    batch[1, 2, 3] = 10
    views = shifted_views(batch, 1)
    assert views.shape == (9, 2, 6, 7, 1) and len(shift_offsets(2)) == 25
    assert np.array_equal(views[0], batch) and shift_offsets(1)[0] == (0, 0)
    for view, (dy, dx) in zip(views, shift_offsets(1)):
        assert view[0, 2 + dy, 3 + dx, 0] == 200 and view[0].sum() == 200
        assert view[1, 2 + dy, 3 + dx, 0] == 10 and (view[1] == 255).sum() == 6 * 7 - 1


@pytest.mark.parametrize("bad", [-1, 4, 1.5, True, "1", None])
def test_bad_support_shift_values(bad):
    meta = metadata(4, support_shift=bad)
    with pytest.raises(ModelError, match="support_shift|support shift"):
        ModelMetadata.from_dict(meta)


def test_metadata_round_trip_and_old_files_default_to_zero():
    assert ModelMetadata.from_dict(metadata(4, support_shift=2)).support_shift == 2
    old = metadata(4)
    assert "support_shift" not in old and ModelMetadata.from_dict(old).support_shift == 0
    assert json.loads(ModelMetadata.from_dict(metadata(4, support_shift=3)).to_json())["support_shift"] == 3


def test_embed_support_is_the_mean_over_views(tmp_path):
    model = _model(tmp_path, 1)
    images = class_batch(2, 3)
    manual = np.mean([model.embed(v[..., 0]) for v in shifted_views(images[..., None], 1)], axis=0)
    assert np.allclose(model.embed(images, views=support_offsets(1)), manual, atol=1e-5)
    assert np.array_equal(model.embed(images, views=support_offsets(0)), model.embed(images))
    assert np.allclose(embed_all_support(model, images[..., None], 1, batch_size=2), manual, atol=1e-5)


def test_classifier_enrolls_with_the_models_shift_and_queries_plain(tmp_path):
    model = _model(tmp_path, 1)
    shots = class_batch(0, 2)
    clf = FewShotClassifier(model)
    clf.enroll("a", shots)
    _, protos = clf.prototypes()
    assert clf.support_shift == 1
    assert np.allclose(
        protos[0], model.embed(shots, views=support_offsets(model.meta.support_shift)).mean(axis=0), atol=1e-5
    )
    plain = FewShotClassifier(model, support_shift=0)
    plain.enroll("a", shots)
    assert np.allclose(plain.prototypes()[1][0], model.embed(shots).mean(axis=0), atol=1e-5)
    query = class_batch(0, 1, seed=9)
    expected = ((model.embed(query)[0] - protos[0]) ** 2).sum()
    assert np.isclose(clf.predict(query)[0][0].distance, expected, rtol=1e-4)
    with pytest.raises(ModelError):
        FewShotClassifier(model, support_shift=7)


def test_evaluate_with_support_embeddings(tmp_path):
    model = _model(tmp_path, 1)
    images = np.concatenate([class_batch(k, 6) for k in range(6)])[..., None]
    targets = np.repeat(np.arange(6), 6)
    emb = embed_all(model, images)
    spec = EpisodeSpec(way=3, shot=1, query=3)
    same = evaluate(emb, targets, spec, 20, seed=1, support_emb=emb)
    assert same.accuracy == evaluate(emb, targets, spec, 20, seed=1).accuracy
    shifted = evaluate(emb, targets, spec, 20, seed=1, support_emb=embed_all_support(model, images, 1))
    assert shifted.accuracy == 1.0
    with pytest.raises(ValueError):
        evaluate(emb, targets, spec, 5, support_emb=emb[:3])


def test_eval_cli_reports_and_overrides_the_shift(tmp_path):
    folder = write_class_folders(tmp_path / "data", 4, 5)
    model = linear_model(tmp_path / "m.onnx", meta=metadata(SIZE * SIZE, support_shift=1))
    args = [
        "eval",
        "--model",
        str(model),
        "--data",
        str(folder),
        "--way",
        "3",
        "--query",
        "2",
        "--episodes",
        "10",
        "--json",
    ]
    default = json.loads(CliRunner().invoke(main, args).stdout)
    override = json.loads(CliRunner().invoke(main, args + ["--support-shift", "0"]).stdout)
    assert (default["support_shift"], override["support_shift"]) == (1, 0)
    bad = CliRunner().invoke(main, args + ["--support-shift", "9"])
    assert bad.exit_code != 0 and "support-shift" in bad.output
