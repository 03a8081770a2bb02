"""The runtime commands through click's CliRunner: results, and every bad input of issue 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_runtime_images import write_png_header_only
from tiny_models import SIZE, class_batch, linear_model

from edgemeta.cli import main


@pytest.fixture
def env(tmp_path):
    model = linear_model(tmp_path / "m.onnx")
    for k in range(3):
        folder = tmp_path / "imgs" / f"c{k}"
        folder.mkdir(parents=True)
        for i, img in enumerate(class_batch(k, 4)):
            Image.fromarray(255 - img).resize((32, 32)).save(folder / f"{i}.png")
    return tmp_path, model


def run(*args: str):
    return CliRunner().invoke(main, [str(a) for a in args])


def enroll_all(tmp, model, store):
    for k in range(3):
        files = sorted((tmp / "imgs" / f"c{k}").glob("[0-2].png"))
        res = run("enroll", "--model", model, "--store", store, f"c{k}", *files)
        assert res.exit_code == 0, res.output


def test_enroll_classify_info(env):
    tmp, model = env
    store = tmp / "s.npz"
    enroll_all(tmp, model, store)
    queries = [tmp / "imgs" / f"c{k}" / "3.png" for k in range(3)]
    res = run("classify", "--model", model, "--store", store, "--json", "--top-k", "2", *queries)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [r["label"] for r in doc["results"]] == ["c0", "c1", "c2"]
    assert len(doc["results"][0]["top"]) == 2
    table = run("classify", "--model", model, "--store", store, *queries)
    assert table.exit_code == 0 and "c1" in table.output and "score" in table.output
    info = run("info", store, "--json")
    assert json.loads(info.output)["shots"] == {"c0": 3, "c1": 3, "c2": 3}
    assert json.loads(run("info", model, "--json").output)["embedding_dim"] == SIZE * SIZE


def test_enroll_folder_of_classes(env):
    tmp, model = env
    res = run("enroll", "--model", model, "--store", tmp / "f.npz", "--folder", tmp / "imgs", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["shots"] == {"c0": 4, "c1": 4, "c2": 4}


def test_label_like_a_path_is_data_and_control_characters_are_refused_unechoed(env):
    tmp, model = env
    res = run("enroll", "--model", model, "--store", tmp / "s.npz", "../../etc/passwd", tmp / "imgs" / "c0")
    assert res.exit_code == 0, res.output
    assert (tmp / "s.npz").is_file() and not (tmp / "etc").exists()
    bad = run("enroll", "--model", model, "--store", tmp / "t.npz", "red\x1b[31m", tmp / "imgs" / "c0")
    assert bad.exit_code == 1 and "U+001B (a control character)" in bad.output and "\x1b" not in bad.output
    assert not (tmp / "t.npz").exists()


def _bad_files(tmp):
    (tmp / "zero.png").write_bytes(b"")
    (tmp / "text.png").write_text("not an image")
    good = (tmp / "imgs" / "c0" / "0.png").read_bytes()
    (tmp / "trunc.png").write_bytes(good[: len(good) // 2])
    write_png_header_only(tmp / "bomb.png", 60_000, 60_000)
    (tmp / "not.onnx").write_text("definitely not onnx")
    linear_model(tmp / "nometa.onnx", with_metadata=False)
    linear_model(tmp / "other.onnx", weights=3 * np.eye(SIZE * SIZE))
    (tmp / "corrupt.npz").write_bytes(b"PK\x03\x04garbage")
    (tmp / "newer.npz").write_bytes((tmp / "s.npz").read_bytes())
    with np.load(tmp / "s.npz") as z:
        arrays = dict(z)
    arrays["format_version"] = np.int64(99)
    np.savez(tmp / "newer.npz", **arrays)
    (tmp / "empty_store.npz").write_bytes(b"")


CASES = {
    "missing model": ("classify", "--model", "{tmp}/nope.onnx", "--store", "{tmp}/s.npz", "{img}"),
    "not onnx": ("classify", "--model", "{tmp}/not.onnx", "--store", "{tmp}/s.npz", "{img}"),
    "no metadata": ("enroll", "--model", "{tmp}/nometa.onnx", "--store", "{tmp}/s.npz", "x", "{img}"),
    "store of another model": ("enroll", "--model", "{tmp}/other.onnx", "--store", "{tmp}/s.npz", "x", "{img}"),
    "corrupted store": ("enroll", "--model", "{model}", "--store", "{tmp}/corrupt.npz", "x", "{img}"),
    "truncated store": ("classify", "--model", "{model}", "--store", "{tmp}/trunc.npz", "{img}"),
    "newer store": ("enroll", "--model", "{model}", "--store", "{tmp}/newer.npz", "x", "{img}"),
    "missing image": ("enroll", "--model", "{model}", "--store", "{tmp}/s.npz", "c0", "{tmp}/nope.png"),
    "not an image": ("enroll", "--model", "{model}", "--store", "{tmp}/s.npz", "c0", "{tmp}/text.png"),
    "truncated png": ("enroll", "--model", "{model}", "--store", "{tmp}/s.npz", "c0", "{img}", "{tmp}/trunc.png"),
    "zero-byte file": ("classify", "--model", "{model}", "--store", "{tmp}/s.npz", "{tmp}/zero.png"),
    "decompression bomb": ("enroll", "--model", "{model}", "--store", "{tmp}/s.npz", "c0", "{tmp}/bomb.png"),
    "enroll with no images": ("enroll", "--model", "{model}", "--store", "{tmp}/s.npz", "c0"),
    "classify missing store": ("classify", "--model", "{model}", "--store", "{tmp}/none.npz", "{img}"),
    "classify empty store": ("classify", "--model", "{model}", "--store", "{tmp}/empty.npz", "{img}"),
    "empty label": ("enroll", "--model", "{model}", "--store", "{tmp}/s.npz", "", "{img}"),
    "blank label": ("enroll", "--model", "{model}", "--store", "{tmp}/s.npz", "   ", "{img}"),
    "info missing": ("info", "{tmp}/nothing.onnx"),
    "info corrupted store": ("info", "{tmp}/corrupt.npz"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_one_line_error_store_unchanged(env, case):
    tmp, model = env
    enroll_all(tmp, model, tmp / "s.npz")
    _bad_files(tmp)
    (tmp / "trunc.npz").write_bytes((tmp / "s.npz").read_bytes()[:200])
    from edgemeta.runtime import EmbeddingModel, FewShotClassifier

    FewShotClassifier(EmbeddingModel(model)).save(tmp / "empty.npz")
    before = {p.name: p.read_bytes() for p in tmp.glob("*.npz")}
    args = [a.format(tmp=tmp, model=model, img=tmp / "imgs" / "c0" / "3.png") for a in CASES[case]]
    res = run(*args)
    assert res.exit_code != 0, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "Traceback" not in res.output
    assert {p.name: p.read_bytes() for p in tmp.glob("*.npz")} == before
