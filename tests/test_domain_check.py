"""The domain check (``runtime/domain.py``): a model records what its training images looked like,
and the runtime flags inputs far outside it, on small synthetic sets."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_models import SIZE, class_batch, linear_model, metadata

from edgemeta.cli import main
from edgemeta.runtime import EmbeddingModel, FewShotClassifier
from edgemeta.runtime import domain as domain_module
from edgemeta.runtime.domain import fit_domain, out_of_domain
from edgemeta.runtime.preprocess import PreprocessSpec, prepare_uint8

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from domain_check import photo_like  # noqa: E402


def strokes(n: int, seed: int, size: int = 28) -> np.ndarray:
    """uint8 [n, size, size, 1]: a few random bright pen strokes on a dark background."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, size, size, 1), dtype=np.uint8)
    for img in out:
        for _ in range(int(rng.integers(1, 4))):
            (y0, x0), (y1, x1) = rng.integers(4, size - 4, (2, 2))
            for t in np.linspace(0, 1, 2 * size):
                y, x = int(round(y0 + t * (y1 - y0))), int(round(x0 + t * (x1 - x0)))
                img[y : y + 2, x : x + 2, 0] = 255
    return out


def _model(tmp_path: Path, domain: dict | None) -> EmbeddingModel:
    meta = metadata(SIZE * SIZE, domain=domain) if domain else metadata(SIZE * SIZE)
    return EmbeddingModel(linear_model(tmp_path / "m.onnx", meta=meta))


def test_the_rule_flags_photos_and_not_fresh_strokes():
    domain = fit_domain(strokes(400, seed=0), "strokes")
    photos = prepare_uint8(photo_like(120, seed=1), PreprocessSpec())
    assert out_of_domain(photos, domain).mean() >= 0.95
    assert out_of_domain(strokes(400, seed=1), domain).mean() <= 0.01


def test_bounds_widen_the_reference_range_by_the_margin():
    domain = fit_domain(strokes(200, seed=0), "strokes", data="synthetic")
    dark = domain["features"]["dark_fraction"]
    assert dark["low"] == pytest.approx(max(0.0, dark["q001"] - domain_module.MARGIN))
    assert domain["images"] == 200 and domain["data"] == "synthetic"


def test_model_method_and_no_domain(tmp_path):
    inside = class_batch(0, 4)
    model = _model(tmp_path, fit_domain(class_batch(1, 50)[..., None], "squares"))
    flags = model.out_of_domain([*inside, *photo_like(4, seed=2)])
    assert flags.tolist() == [False] * 4 + [True] * 4
    plain = EmbeddingModel(linear_model(tmp_path / "p.onnx"))
    assert not plain.out_of_domain(photo_like(3)).any()


def test_predict_does_not_pay_for_the_check(tmp_path, monkeypatch):
    model = _model(tmp_path, fit_domain(class_batch(1, 50)[..., None], "squares"))
    clf = FewShotClassifier(model)
    clf.enroll("a", class_batch(0, 2))

    def boom(batch):
        raise AssertionError("domain statistics computed by predict")

    monkeypatch.setattr(domain_module, "image_features", boom)
    assert clf.classify(photo_like(2)) == ["a", "a"]


def _save(images, folder: Path) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"{i}.png")
        paths.append(str(folder / f"{i}.png"))
    return paths


def test_cli_warns_once_and_classify_json_flags_each_image(tmp_path):
    model = _model(tmp_path, fit_domain(class_batch(1, 50)[..., None], "squares"))
    store, runner = str(tmp_path / "s.npz"), CliRunner()
    good = _save(class_batch(0, 3), tmp_path / "good")
    photos = _save(photo_like(3, seed=4), tmp_path / "photos")
    res = runner.invoke(main, ["enroll", "--model", str(model.path), "--store", store, "a", *good])
    assert res.exit_code == 0 and "Warning" not in res.stderr
    res = runner.invoke(main, ["enroll", "--model", str(model.path), "--store", store, "b", *photos])
    assert res.exit_code == 0 and res.stderr.count("Warning:") == 1 and "squares" in res.stderr
    res = runner.invoke(
        main, ["classify", "--model", str(model.path), "--store", store, "--json", good[0], *photos[:2]]
    )
    assert res.exit_code == 0, res.output
    assert [r["out_of_domain"] for r in json.loads(res.stdout)["results"]] == [False, True, True]
    assert res.stderr.count("Warning:") == 1
    res = runner.invoke(main, ["classify", "--model", str(model.path), "--store", store, *good[:2], photos[0]])
    assert res.exit_code == 0 and "Warning" not in res.stderr  # a minority is not warned about
