"""fp32 and int8 files of one network share prototype stores when export measured enough agreement
(``runtime/interchange.py``); old stores, without a network id, keep loading with their own model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import SIZE, class_batch, linear_model, metadata

from edgemeta.cli import main
from edgemeta.runtime import EmbeddingModel, FewShotClassifier
from edgemeta.runtime.errors import ModelError, StoreError
from edgemeta.runtime.metadata import MIN_STORE_AGREEMENT
from edgemeta.runtime.store import read_store

NET = "ab" * 32


def _file(tmp_path, name: str, scale: float = 1.0, **network) -> EmbeddingModel:
    """A tiny model whose metadata names ``network``; ``scale`` changes its bytes (a sibling file)."""
    meta = metadata(SIZE * SIZE, network=network) if network else metadata(SIZE * SIZE)
    return EmbeddingModel(linear_model(tmp_path / name, weights=scale * np.eye(SIZE * SIZE), meta=meta))


def _store(model: EmbeddingModel, path) -> None:
    clf = FewShotClassifier(model)
    for k in range(3):
        clf.enroll(f"c{k}", class_batch(k, 2))
    clf.save(path)


def _pair(tmp_path, top1: float) -> tuple[EmbeddingModel, EmbeddingModel]:
    fp32 = _file(tmp_path, "fp32.onnx", id=NET, reference=True)
    int8 = _file(tmp_path, "int8.onnx", 1.001, id=NET, reference=False, agreement={"top1": top1})
    return fp32, int8


def test_files_of_one_network_load_each_others_stores(tmp_path):
    fp32, int8 = _pair(tmp_path, MIN_STORE_AGREEMENT + 0.003)
    assert fp32.fingerprint != int8.fingerprint
    for maker, user in ((fp32, int8), (int8, fp32)):
        path = tmp_path / f"{maker.path.stem}.npz"
        _store(maker, path)
        assert read_store(path).network_id == NET
        clf = FewShotClassifier.load(path, user)
        assert clf.labels == ["c0", "c1", "c2"]
        assert clf.classify(class_batch(1, 3, seed=5)) == ["c1"] * 3
    assert CliRunner().invoke(main, ["remove", "--store", str(path), "c0"]).exit_code == 0
    assert read_store(path).network_id == NET  # removing classes keeps the store shareable


def test_too_little_agreement_refuses_both_ways_and_says_re_enroll(tmp_path):
    fp32, int8 = _pair(tmp_path, MIN_STORE_AGREEMENT - 0.01)
    _store(fp32, tmp_path / "a.npz")
    with pytest.raises(StoreError, match=r"another file of network ababababab.*agrees .* 98\.50%.*re-enroll"):
        FewShotClassifier.load(tmp_path / "a.npz", int8)
    _store(int8, tmp_path / "b.npz")
    assert read_store(tmp_path / "b.npz").network_id == ""  # it may not share, so it names no network
    with pytest.raises(StoreError, match="re-enroll"):
        FewShotClassifier.load(tmp_path / "b.npz", fp32)


def test_another_network_is_refused(tmp_path):
    fp32, _ = _pair(tmp_path, 1.0)
    other = _file(tmp_path, "other.onnx", 3.0, id="cd" * 32, reference=True)
    _store(other, tmp_path / "s.npz")
    with pytest.raises(StoreError, match="another model.*re-enroll"):
        FewShotClassifier.load(tmp_path / "s.npz", fp32)


def test_stores_without_network_id_load_with_their_model_only(tmp_path):
    fp32, int8 = _pair(tmp_path, 1.0)
    _store(fp32, tmp_path / "s.npz")
    with np.load(tmp_path / "s.npz") as z:  # a store as edgemeta wrote them before network ids
        old = {k: z[k] for k in z.files if k != "network_id"}
    np.savez(tmp_path / "old.npz", **old)
    assert read_store(tmp_path / "old.npz").network_id == ""
    assert FewShotClassifier.load(tmp_path / "old.npz", fp32).labels == ["c0", "c1", "c2"]
    with pytest.raises(StoreError, match="re-enroll"):
        FewShotClassifier.load(tmp_path / "old.npz", int8)


def test_models_without_network_keep_fingerprint_matching(tmp_path):
    plain = _file(tmp_path, "plain.onnx")
    sibling = _file(tmp_path, "sibling.onnx", 1.001)
    _store(plain, tmp_path / "s.npz")
    assert read_store(tmp_path / "s.npz").network_id == ""
    assert len(FewShotClassifier.load(tmp_path / "s.npz", plain)) == 3
    with pytest.raises(StoreError):
        FewShotClassifier.load(tmp_path / "s.npz", sibling)


@pytest.mark.parametrize("network", [{"id": 5}, {"id": NET, "agreement": {"top1": 1.5}}, {"id": NET, "agreement": [1]}])
def test_malformed_network_metadata_is_a_model_error(tmp_path, network):
    with pytest.raises(ModelError):
        _file(tmp_path, "bad.onnx", **network)


def test_info_says_whether_stores_are_shared(tmp_path):
    _, int8 = _pair(tmp_path, MIN_STORE_AGREEMENT + 0.001)
    res = CliRunner().invoke(main, ["info", str(int8.path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["shares_stores"].startswith("yes") and doc["network"]["id"] == NET
    _store(int8, tmp_path / "s.npz")
    assert json.loads(CliRunner().invoke(main, ["info", str(tmp_path / "s.npz"), "--json"]).stdout)["network_id"] == NET


def test_shipped_fp32_and_int8_files_load_each_others_stores(tmp_path):
    from edgemeta.runtime import default_model_path

    folder = default_model_path().parent
    examples = folder / "examples" / "mnist"
    if not (folder / "default.int8.onnx").is_file() or not examples.is_dir():
        pytest.skip("the shipped int8 file or example images are not installed")
    fp32, int8 = EmbeddingModel(folder / "default.onnx"), EmbeddingModel(folder / "default.int8.onnx")
    assert fp32.meta.store_network_id is not None and fp32.meta.store_network_id == int8.meta.store_network_id
    digits = sorted(d for d in examples.iterdir() if d.is_dir())
    queries = [str(sorted(d.iterdir())[-1]) for d in digits]
    for maker, user in ((fp32, int8), (int8, fp32)):
        clf = FewShotClassifier(maker)
        for d in digits:
            clf.enroll(d.name, [str(p) for p in sorted(d.iterdir())[:5]])
        clf.save(tmp_path / f"{maker.path.stem}.npz")
        loaded = FewShotClassifier.load(tmp_path / f"{maker.path.stem}.npz", user)
        assert loaded.labels == clf.labels
        mine = [p[0].label for p in clf.predict(queries)]
        assert [p[0].label for p in loaded.predict(queries)] == mine
