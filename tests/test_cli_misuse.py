"""Misuse that used to pass silently or end in a traceback (issue 21 item 5, issue 22 item 5):
missing extras, labels that cannot print, a forgotten label, a baked classifier as --model, tiny
images, and a classify table whose rows can be told apart."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_models import SIZE, class_batch, linear_model

from edgemeta.cli import main
from edgemeta.runtime import EdgemetaError, EmbeddingModel, FewShotClassifier, ImageError, ModelError

ERRORS_MD = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
EXTRA_MODULES = ("torch", "torchvision", "onnx", "onnxscript")
EXTRA_ROW = re.compile(r"^\|\s*`([a-z]+)`\s*\|\s*`(.*)`\s*\|\s*`(.*)`\s*\|\s*$")


def run(*args) -> object:
    return CliRunner().invoke(main, [str(a) for a in args])


def run_blocked(args: list[str], blocked: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess:
    """The CLI in a fresh interpreter where importing any of ``blocked`` fails, as when not installed."""
    code = (
        "import sys\nfor m in sys.argv[1].split(','): sys.modules[m] = None\n"
        "from edgemeta.cli import main\nmain(sys.argv[2:], prog_name='edgemeta')\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code, ",".join(blocked), *args], cwd=cwd, capture_output=True, text=True, check=False
    )


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Path:
    """m.onnx, s.npz (classes c0..c2), baked.onnx, and PNGs a/00.png, b/00.png (class 1), q0.png (class 0)."""
    from edgemeta.export.bake import bake

    tmp = tmp_path_factory.mktemp("misuse")
    model = EmbeddingModel(linear_model(tmp / "m.onnx"))
    clf = FewShotClassifier(model)
    for k in range(3):
        clf.enroll(f"c{k}", class_batch(k, 2))
    clf.save(tmp / "s.npz")
    bake(model, tmp / "s.npz", tmp / "baked.onnx")
    for folder, seed in (("a", 5), ("b", 6)):
        (tmp / folder).mkdir()
        Image.fromarray(class_batch(1, 1, seed=seed)[0]).save(tmp / folder / "00.png")
    Image.fromarray(class_batch(0, 1, seed=7)[0]).save(tmp / "q0.png")
    return tmp


def extra_rows() -> list[tuple[str, str, str]]:
    section = ERRORS_MD.read_text(encoding="utf-8").split("## missing extras", 1)[1]
    return [m.groups() for m in map(EXTRA_ROW.match, section.splitlines()) if m]


# ---------------------------------------------------------------- extras


def test_the_missing_extras_table_has_a_row_per_command():
    assert {r[0] for r in extra_rows()} == {"train", "export", "bake", "bench"}


@pytest.mark.parametrize("row", extra_rows(), ids=lambda r: r[0])
def test_command_without_its_extra_says_which_in_one_line(env, row):
    command, args, message = row
    res = run_blocked([command, *shlex.split(args.replace("{tmp}", str(env)))], EXTRA_MODULES, env)
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    assert res.stderr.splitlines() == [f"Error: {message}"]


def test_bake_runs_without_torch(env, tmp_path):
    out = tmp_path / "b.onnx"
    res = run_blocked(
        ["bake", "--model", str(env / "m.onnx"), "--store", str(env / "s.npz"), "--out", str(out), "--json"],
        ("torch", "torchvision"),
        env,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["classes"] == 3 and out.is_file()


# ---------------------------------------------------------------- labels


@pytest.mark.parametrize("label", ["bad\udcffbyte", "line\nbreak", "bell\x07", "para\u2029graph"])
def test_unprintable_label_is_refused_by_the_cli_and_the_api_alike(env, tmp_path, label):
    res = run("enroll", "--model", env / "m.onnx", "--store", tmp_path / "t.npz", label, env / "q0.png")
    assert res.exit_code == 1 and not (tmp_path / "t.npz").exists()
    assert res.output.startswith("Error: a label must be printable text on one line: character ")
    assert len(res.output.splitlines()) == 1
    with pytest.raises(EdgemetaError, match="printable text on one line") as api:
        FewShotClassifier(EmbeddingModel(env / "m.onnx")).enroll(label, class_batch(0, 1))
    assert str(api.value) in res.output


@pytest.mark.parametrize("label", ["big cat", "\U0001f468\u200d\U0001f469\u200d\U0001f467", "\u05e9\u05dc\u05d5\u05dd"])
def test_spaces_joiners_and_other_scripts_are_fine(env, label):
    clf = FewShotClassifier(EmbeddingModel(env / "m.onnx"))
    clf.enroll(label, class_batch(0, 1))
    assert clf.labels == [label]


def test_label_option_takes_every_argument_as_an_image(env, tmp_path):
    store = tmp_path / "t.npz"
    named_after_a_file = run(
        "enroll",
        "--model",
        env / "m.onnx",
        "--store",
        store,
        "--label",
        "q0.png",
        env / "q0.png",
        env / "a" / "00.png",
        "--json",
    )
    assert named_after_a_file.exit_code == 0, named_after_a_file.output
    assert json.loads(named_after_a_file.output)["added"] == {"q0.png": 2}
    forgotten = run("enroll", "--model", env / "m.onnx", "--store", store, env / "q0.png", env / "a" / "00.png")
    assert forgotten.exit_code == 1 and "did you forget the label?" in forgotten.output


def test_a_label_that_names_a_folder_of_its_images_is_not_mistaken(env, tmp_path, monkeypatch):
    monkeypatch.chdir(env)
    res = run("enroll", "--model", "m.onnx", "--store", tmp_path / "t.npz", "a", "a", "--json")
    assert res.exit_code == 0 and json.loads(res.output)["added"] == {"a": 1}, res.output


# ---------------------------------------------------------------- baked classifier as a model


def test_baked_classifier_is_refused_as_an_embedding_model_by_the_api(env):
    with pytest.raises(ModelError, match="is a baked classifier \\(edgemeta bake\\)"):
        EmbeddingModel(env / "baked.onnx")


def test_info_says_what_a_baked_classifier_holds(env):
    res = run("info", "--json", env / "baked.onnx")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["kind"] == "classifier" and doc["classes"] == 3 and doc["shots"] == {"c0": 2, "c1": 2, "c2": 2}
    assert doc["model_fingerprint"] == EmbeddingModel(env / "m.onnx").fingerprint
    assert run("info", env / "m.onnx", "--json").output.count('"kind": "model"') == 1


# ---------------------------------------------------------------- tiny images


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((1, 1), np.uint8),
        np.zeros((7, 30), np.uint8),
        np.zeros((3, 4, 4)),
        [np.zeros((SIZE, SIZE), np.uint8), np.zeros((2, 9, 3), np.uint8)],
        Image.new("L", (30, 7)),
    ],
    ids=["1x1", "7x30", "batch-4x4", "in-a-list", "pil-30x7"],
)
def test_image_under_8_pixels_on_a_side_is_refused_before_resizing(env, image):
    with pytest.raises(ImageError, match="under the minimum of 8 on a side"):
        EmbeddingModel(env / "m.onnx").embed(image)


def test_image_of_8_pixels_on_a_side_is_fine(env):
    assert EmbeddingModel(env / "m.onnx").embed(Image.new("L", (8, 40))).shape == (1, SIZE * SIZE)


# ---------------------------------------------------------------- the classify table


def classify(env, *args):
    res = run("classify", "--model", env / "m.onnx", "--store", env / "s.npz", *args)
    assert res.exit_code == 0, res.output
    return res.output


def test_same_named_files_in_different_folders_get_distinct_rows(env):
    table = classify(env, env / "a" / "00.png", env / "b" / "00.png").splitlines()
    assert [line.split()[0] for line in table[1:]] == ["a/00.png", "b/00.png"]
    doc = json.loads(classify(env, "--json", env / "a" / "00.png", env / "b" / "00.png"))
    assert [r["image"] for r in doc["results"]] == [str(env / "a" / "00.png"), str(env / "b" / "00.png")]


def test_rejected_row_names_its_nearest_class(env):
    doc = json.loads(classify(env, "--json", "--threshold", "1e-9", env / "q0.png"))
    row = doc["results"][0]
    assert row["label"] is None and row["accepted"] is False
    assert row["nearest"] == row["top"][0] and row["nearest"]["label"] == "c0"
    table = classify(env, "--threshold", "1e-9", env / "q0.png")
    assert f"unknown (nearest c0, distance {row['nearest']['distance']:.4g})" in table
    accepted = json.loads(classify(env, "--json", env / "q0.png"))["results"][0]
    assert accepted["accepted"] is True and accepted["label"] == "c0" == accepted["nearest"]["label"]


def test_a_class_named_unknown_is_told_apart_from_a_rejection(env, tmp_path):
    model = EmbeddingModel(env / "m.onnx")
    clf = FewShotClassifier(model)
    clf.enroll("unknown", class_batch(0, 2))
    clf.save(tmp_path / "u.npz")
    args = ("classify", "--model", env / "m.onnx", "--store", tmp_path / "u.npz")
    accepted = run(*args, env / "q0.png").output.splitlines()[1]
    rejected = run(*args, "--threshold", "1e-9", env / "q0.png").output.splitlines()[1]
    assert accepted.split()[1] == "'unknown'"
    assert rejected.split()[1:4] == ["unknown", "(nearest", "'unknown',"]


def test_display_paths_fall_back_to_the_paths_as_given():
    from edgemeta.commands.classify_cmd import display_paths

    assert display_paths([Path("x.png"), Path("d/y.png")]) == ["x.png", "d/y.png"]
    assert display_paths([Path("/abs/x.png"), Path("rel/x.png")]) == ["/abs/x.png", "rel/x.png"]
    assert display_paths([Path("/d/e/x.png"), Path("/d/f/x.png")]) == ["e/x.png", "f/x.png"]
