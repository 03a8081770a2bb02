"""Query views: queries embedded as the mean over a few shifted copies (test-time augmentation)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import SIZE, class_batch, linear_model, metadata, write_class_folders

from edgemeta.cli import main
from edgemeta.lab.evaluation import embed_all, embed_all_queries
from edgemeta.runtime import EmbeddingModel, FewShotClassifier
from edgemeta.runtime.errors import ModelError
from edgemeta.runtime.preprocess import QUERY_VIEW_OFFSETS, offset_views, query_offsets, shift_offsets, shifted_views


@pytest.fixture
def model(tmp_path) -> EmbeddingModel:
    return EmbeddingModel(linear_model(tmp_path / "m.onnx", meta=metadata(SIZE * SIZE, support_shift=1)))


def _manual_mean(model: EmbeddingModel, images: np.ndarray, views: int) -> np.ndarray:
    """The mean over the query views, one shifted copy at a time through the plain ``embed``."""
    copies = offset_views(images[..., None], QUERY_VIEW_OFFSETS[views])
    return np.mean([model.embed(c[..., 0]) for c in copies], axis=0)


def test_view_sets_start_unshifted_and_lie_in_the_one_pixel_grid():
    grid = set(shift_offsets(1))
    for views, offsets in QUERY_VIEW_OFFSETS.items():
        assert len(offsets) == views == len(set(offsets)) and offsets[0] == (0, 0) and set(offsets) <= grid
    batch = class_batch(1, 2)[..., None]
    assert np.array_equal(offset_views(batch, shift_offsets(1)), shifted_views(batch, 1))


@pytest.mark.parametrize("shape", [(1, 28, 28, 1), (5, 7, 9, 3), (2, 6, 7, 1)])
def test_views_repeat_the_edge_like_numpy_edge_padding(shape):
    batch = np.random.default_rng(0).integers(0, 256, shape).astype(np.uint8)
    for r in (1, 2, 3):
        padded = np.pad(batch, ((0, 0), (r, r), (r, r), (0, 0)), mode="edge")
        expected = np.stack(
            [padded[:, r - dy : r - dy + shape[1], r - dx : r - dx + shape[2]] for dy, dx in shift_offsets(r)]
        )
        assert np.array_equal(offset_views(batch, shift_offsets(r)), expected)


@pytest.mark.parametrize("views", [3, 5, 9])
def test_embed_query_is_the_mean_over_its_views(model, views):
    images = class_batch(2, 4)
    expected = _manual_mean(model, images, views)
    assert np.allclose(model.embed(images, views=query_offsets(views)), expected, atol=1e-5)
    assert np.allclose(model.embed(images[:1], views=query_offsets(views)), expected[:1], atol=1e-5)  # batch 1 too
    assert np.allclose(embed_all_queries(model, images[..., None], views, batch_size=3), expected, atol=1e-5)
    assert not np.allclose(expected, model.embed(images), atol=1e-3)  # the views do change it
    assert np.array_equal(model.embed(images, views=query_offsets(1)), model.embed(images))
    assert np.array_equal(embed_all_queries(model, images[..., None], 1), embed_all(model, images[..., None]))


def test_classifier_predicts_on_query_views_and_enrolls_as_before(model):
    plain, tta = FewShotClassifier(model), FewShotClassifier(model, query_views=3)
    for k in range(3):
        shots = class_batch(k, 2)
        plain.enroll(f"c{k}", shots), tta.enroll(f"c{k}", shots)
    assert np.array_equal(plain.prototypes()[1], tta.prototypes()[1])
    queries = np.concatenate([class_batch(k, 2, seed=5) for k in range(3)])
    batch = tta.predict(queries)
    for i, query in enumerate(queries):
        one = tta.predict(query)[0][0]  # one image: not the bound batch-1 path, the views path
        expected = ((_manual_mean(model, query[None], 3)[0] - tta.prototypes()[1]) ** 2).sum(axis=1).min()
        assert one.label == batch[i][0].label and np.isclose(one.distance, expected, rtol=1e-4)
    assert [p[0].label for p in batch] == [f"c{k}" for k in range(3) for _ in range(2)]
    for bad in (2, 0, True, "3"):
        with pytest.raises(ModelError, match="query views"):
            FewShotClassifier(model, query_views=bad)


def test_cli_eval_classify_and_bench_take_query_views(model, tmp_path):
    folder = write_class_folders(tmp_path / "data", 4, 5)
    run = CliRunner().invoke
    args = [
        "eval",
        "--model",
        str(model.path),
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
    report = json.loads(run(main, args + ["--query-views", "3"]).stdout)
    assert report["query_views"] == 3 and report["accuracy"] == 1.0
    bad = run(main, args + ["--query-views", "2"])
    assert bad.exit_code == 2 and "--query-views" in bad.output and "Traceback" not in bad.output
    store = tmp_path / "s.npz"
    for k in range(4):
        assert (
            run(
                main,
                ["enroll", "--model", str(model.path), "--store", str(store), f"c{k}", str(folder / f"c{k}" / "0.png")],
            ).exit_code
            == 0
        )
    result = run(
        main,
        [
            "classify",
            "--model",
            str(model.path),
            "--store",
            str(store),
            "--query-views",
            "3",
            "--json",
            str(folder / "c2" / "3.png"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["results"][0]["label"] == "c2"
    result = run(
        main,
        [
            "bench",
            "--model",
            str(model.path),
            "--query-views",
            "3",
            "--iterations",
            "3",
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
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["config"]["query_views"] == 3
