"""Untrusted files: no pickle on any load path, bombs refused before decoding, hostile models
refused clearly, labels are data (stored exactly, printed escaped)."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import needs_torch
from onnx import TensorProto, helper, numpy_helper
from PIL import Image, ImageFile
from tiny_models import SIZE, class_batch, linear_model, metadata

from edgemeta.cli import main
from edgemeta.runtime import (
    DataError,
    EdgemetaError,
    EmbeddingModel,
    FewShotClassifier,
    ImageError,
    ModelError,
    StoreError,
)
from edgemeta.runtime import model as model_module
from edgemeta.runtime import store as store_module
from edgemeta.runtime.store import read_store


class Evil:
    """Unpickling this creates a marker file: proof that a loader ran code from a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def model(tmp_path):
    return EmbeddingModel(linear_model(tmp_path / "m.onnx"))


def _store_arrays(model: EmbeddingModel) -> dict[str, np.ndarray]:
    return dict(
        format_version=np.int64(1),
        labels=np.array(["a"]),
        sums=np.zeros((1, SIZE * SIZE)),
        counts=np.array([1]),
        model_fingerprint=np.str_(model.fingerprint),
        metric=np.str_("sqeuclidean"),
    )


# ---------------------------------------------------------------- no pickle


@pytest.mark.parametrize("key", ["labels", "sums", "counts", "model_fingerprint"])
def test_store_with_a_pickled_object_array_is_refused_and_runs_nothing(tmp_path, model, key):
    marker = tmp_path / "pwned"
    arrays = _store_arrays(model)
    arrays[key] = np.array([Evil(marker)], dtype=object)
    np.savez(tmp_path / "evil.npz", **arrays)
    with pytest.raises(StoreError):
        FewShotClassifier.load(tmp_path / "evil.npz", model)
    assert not marker.exists()


def test_data_source_npz_with_object_array_is_refused_and_runs_nothing(tmp_path):
    from edgemeta.lab.datasets import load_source
    from edgemeta.runtime import PreprocessSpec

    marker = tmp_path / "pwned"
    np.savez(tmp_path / "images_background.npz", images=np.array([Evil(marker)], dtype=object))
    with pytest.raises(DataError):
        load_source(tmp_path / "images_background.npz", PreprocessSpec(size=(8, 8)))
    assert not marker.exists()


@needs_torch
@pytest.mark.torch
def test_checkpoint_with_pickled_code_is_refused_and_runs_nothing(tmp_path):
    import torch

    from edgemeta.export.checkpoint import load_checkpoint as export_load
    from edgemeta.runtime.errors import EdgemetaError
    from edgemeta.train.checkpoint import read_checkpoint as train_load

    marker = tmp_path / "pwned"
    torch.save(
        {"format": "edgemeta-checkpoint", "version": 1, "config": {}, "model": {"w": Evil(marker)}},
        tmp_path / "evil.pt",
    )
    for load in (train_load, export_load):
        with pytest.raises(EdgemetaError):
            load(tmp_path / "evil.pt")
    res = CliRunner().invoke(main, ["export", str(tmp_path / "evil.pt"), "--out", str(tmp_path / "x.onnx")])
    assert res.exit_code != 0 and res.output.startswith("Error: ")
    assert not marker.exists()


# ---------------------------------------------------------------- bombs and absurd sizes


def test_real_png_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("1", (9000, 9000)).save(path, optimize=True)  # 81 Mpixel, a few kB on disk
    assert path.stat().st_size < 200_000

    def no_decoding(self):
        raise AssertionError("decoded a bomb")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(ImageError, match="over the limit"):
        EmbeddingModel(linear_model(tmp_path / "m.onnx")).embed(path)


def test_store_that_unpacks_too_large_is_refused_before_unpacking(tmp_path, model, monkeypatch):
    FewShotClassifier(model).save(tmp_path / "s.npz")
    buf = io.BytesIO()
    np.savez_compressed(buf, **{**_store_arrays(model), "sums": np.zeros((1000, SIZE * SIZE))})
    (tmp_path / "bomb.npz").write_bytes(buf.getvalue())
    monkeypatch.setattr(store_module, "MAX_STORE_BYTES", 100_000)
    with pytest.raises(StoreError, match="unpacks to more than"):
        read_store(tmp_path / "bomb.npz")


def test_store_array_declaring_an_absurd_shape_is_refused_without_allocating(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**9, 10**9)})
    with zipfile.ZipFile(tmp_path / "s.npz", "w") as z:
        z.writestr("sums.npy", header.getvalue() + b"\0" * 64)
    with pytest.raises(StoreError, match="declares more data"):
        read_store(tmp_path / "s.npz")


def test_zip_data_source_with_a_huge_member_is_refused(tmp_path):
    from edgemeta.lab.datasets import load_source
    from edgemeta.runtime import PreprocessSpec

    with zipfile.ZipFile(tmp_path / "images_background.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("images_background/A/character01/x.png", b"\0" * (17 * 1024 * 1024))
    with pytest.raises(DataError, match="implausibly large"):
        load_source(tmp_path / "images_background.zip", PreprocessSpec(size=(8, 8)))


# ---------------------------------------------------------------- hostile models


def test_model_over_the_size_limit_is_refused(tmp_path, monkeypatch):
    path = linear_model(tmp_path / "m.onnx")
    monkeypatch.setattr(model_module, "MAX_MODEL_BYTES", 100)
    with pytest.raises(ModelError, match="over the limit of 100"):
        EmbeddingModel(path)


def _graph_model(path: Path, inputs, outputs, nodes, inits=(), meta=None) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    helper.set_model_props(m, {"edgemeta": json.dumps(meta or metadata(SIZE * SIZE))})
    onnx.save(m, str(path))
    return path


def _vi(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, shape)


W = numpy_helper.from_array(np.eye(SIZE * SIZE, dtype=np.float32), "W")
FLAT = helper.make_node("Flatten", ["images"], ["flat"], axis=1)
MATMUL = helper.make_node("MatMul", ["flat", "W"], ["embeddings"])
HOSTILE = {
    "two inputs": (
        [_vi("images", ["N", 1, SIZE, SIZE]), _vi("extra", ["N"])],
        [_vi("embeddings", ["N", SIZE * SIZE])],
        [FLAT, MATMUL],
        [W],
        "one input named",
    ),
    "input of another name": (
        [_vi("pixels", ["N", 1, SIZE, SIZE])],
        [_vi("embeddings", ["N", SIZE * SIZE])],
        [helper.make_node("Flatten", ["pixels"], ["flat"], axis=1), MATMUL],
        [W],
        "one input named",
    ),
    "wrong input shape": (
        [_vi("images", ["N", 3, SIZE, SIZE])],
        [_vi("embeddings", ["N", 3 * SIZE * SIZE])],
        [FLAT, helper.make_node("Identity", ["flat"], ["embeddings"])],
        [],
        "expected \\[N, 1",
    ),
    "double input": (
        [_vi("images", ["N", 1, SIZE, SIZE], TensorProto.DOUBLE)],
        [_vi("embeddings", ["N", SIZE * SIZE], TensorProto.DOUBLE)],
        [FLAT, helper.make_node("Identity", ["flat"], ["embeddings"])],
        [],
        "must be float32",
    ),
    "3-D output": (
        [_vi("images", ["N", 1, SIZE, SIZE])],
        [_vi("embeddings", ["N", 1, SIZE * SIZE])],
        [helper.make_node("Reshape", ["images", "shape"], ["embeddings"])],
        [numpy_helper.from_array(np.array([-1, 1, SIZE * SIZE], dtype=np.int64), "shape")],
        "2-D output",
    ),
    "no output of that name": (
        [_vi("images", ["N", 1, SIZE, SIZE])],
        [_vi("features", ["N", SIZE * SIZE])],
        [helper.make_node("Flatten", ["images"], ["features"], axis=1)],
        [],
        "2-D output named",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_model_with_unexpected_inputs_or_outputs_is_refused_clearly(tmp_path, case):
    inputs, outputs, nodes, inits, message = HOSTILE[case]
    path = _graph_model(tmp_path / "m.onnx", inputs, outputs, nodes, inits)
    with pytest.raises(ModelError, match=message):
        EmbeddingModel(path)
    res = CliRunner().invoke(main, ["info", str(path)])
    assert res.exit_code == 1 and res.output.startswith("Error: ") and len(res.output.splitlines()) == 1


def test_model_pointing_at_external_data_outside_is_refused(tmp_path):
    weights = numpy_helper.from_array(np.eye(SIZE * SIZE, dtype=np.float32), "W")
    weights.ClearField("raw_data")
    weights.data_location = TensorProto.EXTERNAL
    weights.external_data.add(key="location", value="../../../../etc/passwd")
    path = _graph_model(
        tmp_path / "m.onnx",
        [_vi("images", ["N", 1, SIZE, SIZE])],
        [_vi("embeddings", ["N", SIZE * SIZE])],
        [FLAT, MATMUL],
        [weights],
    )
    with pytest.raises(ModelError):
        EmbeddingModel(path)


# ---------------------------------------------------------------- labels are data

HOSTILE_LABELS = ["../../etc/passwd", "..\\..\\windows\\system32", "\u202eevil", "/abs/path", "zero\u200bwidth"]
# Refused by check_label: terminal escapes, line breaks, tabs, and what a non-UTF-8 argv byte becomes.
REFUSED_LABELS = ["\x1b[31mred\x1b[0m", "two\nlines", "tab\there", "para\u2029graph", "bad\udcffutf8"]


def test_hostile_labels_round_trip_exactly_and_touch_no_path(tmp_path, model, monkeypatch):
    monkeypatch.chdir(tmp_path)
    clf = FewShotClassifier(model)
    for k, label in enumerate(HOSTILE_LABELS):
        clf.enroll(label, class_batch(k, 2))
    clf.save(tmp_path / "s.npz")
    assert FewShotClassifier.load(tmp_path / "s.npz", model).labels == HOSTILE_LABELS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx", "s.npz"]


@pytest.mark.parametrize("label", ["a\x00", "mid\x00dle"])
def test_label_with_nul_is_refused_so_it_cannot_collide_in_the_store(tmp_path, model, label):
    """Found here: "a" and "a\\x00" saved as two labels, and the store no longer loaded (repeated labels)."""
    from edgemeta.runtime import EdgemetaError

    clf = FewShotClassifier(model)
    clf.enroll("a", class_batch(0, 1))
    with pytest.raises(EdgemetaError, match="NUL"):
        clf.enroll(label, class_batch(1, 1))
    clf.save(tmp_path / "s.npz")
    assert FewShotClassifier.load(tmp_path / "s.npz", model).labels == ["a"]


def test_hostile_labels_are_printed_escaped_by_classify_and_info(tmp_path, model):
    clf = FewShotClassifier(model)
    for k, label in enumerate(HOSTILE_LABELS):
        clf.enroll(label, class_batch(k, 2))
    clf.save(tmp_path / "s.npz")
    Image.fromarray(class_batch(2, 1, seed=9)[0]).save(tmp_path / "q.png")
    runner = CliRunner()
    table = runner.invoke(
        main,
        [
            "classify",
            "--model",
            str(model.path),
            "--store",
            str(tmp_path / "s.npz"),
            "--top-k",
            "7",
            str(tmp_path / "q.png"),
        ],
    )
    info = runner.invoke(main, ["info", str(tmp_path / "s.npz")])
    info_json = runner.invoke(main, ["info", "--json", str(tmp_path / "s.npz")])
    for res in (table, info, info_json):
        assert res.exit_code == 0, res.output
        assert not any(c in res.output for c in "\x1b\u202e\u200b\t\x00")
        assert "../../etc/passwd" in res.output
    assert "\\u202eevil" in table.output and "zero\\u200bwidth" in table.output
    assert len(table.output.splitlines()) == 1 + 5
    assert "\\u202eevil" in info.output and "zero\\u200bwidth" in info.output
    assert list(json.loads(info_json.output)["shots"]) == HOSTILE_LABELS  # exact labels, no collisions


@pytest.mark.parametrize("label", REFUSED_LABELS)
def test_label_that_cannot_print_on_one_line_is_refused(model, label):
    clf = FewShotClassifier(model)
    with pytest.raises(EdgemetaError, match="printable text on one line: character"):
        clf.enroll(label, class_batch(0, 1))
    assert clf.labels == []


def test_store_written_earlier_with_such_a_label_loads_nowhere_but_info_shows_it(tmp_path, model):
    """Stores from before labels had to be printable: classify/enroll/bake refuse them naming the store,
    ``info`` still lists every label (escaped), and ``remove`` drops them."""
    from edgemeta.runtime.store import StoreContents, write_store

    labels = ["ok", *REFUSED_LABELS]
    write_store(
        tmp_path / "old.npz",
        StoreContents(
            labels,
            np.ones((len(labels), SIZE * SIZE)),
            np.ones(len(labels), np.int64),
            model.fingerprint,
            "sqeuclidean",
        ),
    )
    with pytest.raises(StoreError, match=f"store {tmp_path / 'old.npz'} holds an invalid label"):
        FewShotClassifier.load(tmp_path / "old.npz", model)
    Image.fromarray(class_batch(0, 1)[0]).save(tmp_path / "q.png")
    res = CliRunner().invoke(
        main, ["classify", "--model", str(model.path), "--store", str(tmp_path / "old.npz"), str(tmp_path / "q.png")]
    )
    assert res.exit_code == 1 and res.output.startswith("Error: store ") and len(res.output.splitlines()) == 1
    info = CliRunner().invoke(main, ["info", "--json", str(tmp_path / "old.npz")])
    assert info.exit_code == 0 and list(json.loads(info.output)["shots"]) == labels
    fixed = CliRunner().invoke(main, ["remove", "--store", str(tmp_path / "old.npz"), *REFUSED_LABELS])
    assert fixed.exit_code == 0, fixed.output
    assert FewShotClassifier.load(tmp_path / "old.npz", model).labels == ["ok"]
