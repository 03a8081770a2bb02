"""Colour models end to end on a tiny generated colour-shapes set: train (channels from the data),
export fp32 and int8, info, enroll/classify held-out classes, eval, bake, bench, --init fine-tuning."""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import needs_torch, write_toy_mnist
from PIL import Image
from tiny_models import write_class_folders

from edgemeta.cli import main
from edgemeta.lab.colour_shapes import split_classes, write_colour_shapes
from edgemeta.lab.datasets import colour_source

COLOURS = ["red", "green", "blue", "yellow"]
SHAPES = ["circle", "square", "triangle", "cross"]
PER_CLASS = 10


def _invoke(*argv: str) -> str:
    result = CliRunner().invoke(main, list(argv))
    assert result.exit_code == 0, result.output
    return result.stdout


def _tiny_train_args(data: Path, out: Path) -> list[str]:
    return [
        "train", "--data", str(data), "--out", str(out), "--size", "16", "--episodes", "24", "--shot", "1",
        "--query", "3", "--val-every", "24", "--val-episodes", "10", "--test-way", "2",
        "--no-progress", "--json",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("colour_shapes")
    return write_colour_shapes(root, PER_CLASS, seed=1, colours=COLOURS, shapes=SHAPES, max_size=(96, 72))


@pytest.fixture(scope="module")
def colour_run(shapes, tmp_path_factory) -> dict:
    """One tiny colour training run (channels, way and mean/std left to the data) and its export."""
    train_dir, held = shapes
    tmp = tmp_path_factory.mktemp("colour_run")
    result = CliRunner().invoke(main, _tiny_train_args(train_dir, tmp / "run"))
    assert result.exit_code == 0, result.output
    model = tmp / "model.onnx"
    _invoke("export", str(tmp / "run"), "--out", str(model), "--data", str(held), "--episodes", "20")
    return {"dir": tmp, "run": tmp / "run", "model": model, "stderr": result.stderr}


def test_held_out_classes_are_unseen_combinations_with_colour_only_pairs():
    train, held = split_classes(COLOURS, SHAPES)
    assert not set(train) & set(held) and len(train) + len(held) == len(COLOURS) * len(SHAPES)
    seen = {tuple(n.split("_")) for n in train}
    assert {c for c, _ in seen} == set(COLOURS) and {s for _, s in seen} == set(SHAPES)
    by_shape: dict[str, list[str]] = {}
    for name in held:
        colour, shape = name.split("_")
        by_shape.setdefault(shape, []).append(colour)
    assert all(len(colours) == 2 for colours in by_shape.values())  # each held-out shape in two colours


def test_generated_images_vary_in_size_format_and_background(shapes):
    files = sorted(shapes[0].rglob("*.*"))
    sizes = {Image.open(f).size for f in files}
    assert len(sizes) > len(files) // 2 and min(min(s) for s in sizes) >= 32
    assert {f.suffix for f in files} == {".png", ".jpg"}
    corners = np.array([np.asarray(Image.open(f).convert("RGB"))[0, 0] for f in files], dtype=float)
    assert corners.std(axis=0).min() > 20  # backgrounds differ


def test_colour_is_detected_from_the_data(shapes, tmp_path):
    assert colour_source(shapes[0])
    assert not colour_source(write_class_folders(tmp_path / "gray", classes=3, per_class=2))
    rgb_of_gray = tmp_path / "rgb_of_gray" / "a"
    rgb_of_gray.mkdir(parents=True)
    Image.fromarray(np.full((40, 40, 3), 90, dtype=np.uint8)).save(rgb_of_gray / "0.png")
    assert not colour_source(rgb_of_gray.parent)
    assert not colour_source(write_toy_mnist(tmp_path))


def test_channel_statistics_match_numpy():
    from edgemeta.train.input_spec import channel_statistics

    images = np.random.default_rng(0).integers(0, 256, (9, 5, 4, 3), dtype=np.uint8)
    mean, std = channel_statistics(images, chunk=4)
    flat = images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, flat.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(std, flat.std(axis=0), atol=1e-6)


@needs_torch
def test_colour_augmentation_keeps_hue_and_fills_with_the_mean():
    import torch

    from edgemeta.train.augment import PRESETS, AugmentConfig, augment, for_channels

    cfg = for_channels(PRESETS["full"], 3)
    assert cfg.dilate == cfg.erode == 0 and cfg.saturation > 0 and for_channels(PRESETS["full"], 1).dilate > 0
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.4 * torch.rand(64, 3, 8, 8, generator=g)
    fill = torch.tensor([0.2, 0.5, 0.7]).view(1, 3, 1, 1)
    no_affine = dict(rotate=0.0, scale=0.0, shear=0.0, translate=0.0, dilate=0.0)
    y = augment(x, AugmentConfig(**no_affine, brightness=0.2, contrast=0.2, saturation=0.1), g, fill)
    inside = ((y > 0) & (y < 1)).all(dim=1)
    hue = np.vectorize(lambda r, gg, b: colorsys.rgb_to_hsv(r, gg, b)[0])
    a = hue(*x.permute(1, 0, 2, 3).numpy())[inside.numpy()]
    b = hue(*y.permute(1, 0, 2, 3).numpy())[inside.numpy()]
    assert not torch.allclose(x, y) and np.abs(a - b).max() < 1e-4
    shift = AugmentConfig(rotate=0.0, scale=0.0, shear=0.0, translate=0.5, dilate=0.0)
    shifted = augment(torch.full((16, 3, 8, 8), 0.9), shift, g, fill)
    is_fill = (shifted - fill).abs().amax(dim=1) < 1e-5
    is_image = (shifted - 0.9).abs().amax(dim=1) < 1e-5
    blend = ~(is_fill | is_image)  # bilinear edge pixels: between the image and the fill, never black
    assert is_fill.any() and (shifted[blend.unsqueeze(1).expand_as(shifted)] >= 0.2 - 1e-5).all()


@needs_torch
def test_train_in_colour_records_the_encoding(colour_run, shapes):
    from edgemeta.lab.datasets import load_source
    from edgemeta.train.input_spec import channel_statistics

    assert "training in colour" in colour_run["stderr"] and "--way" in colour_run["stderr"]
    config = json.loads((colour_run["run"] / "config.json").read_text())
    pre = config["preprocess"]
    assert config["in_channels"] == pre["channels"] == 3 and pre["polarity"] == "none"
    assert pre.get("aspect", "letterbox") == "letterbox"
    assert config["way"] == config["train_classes"]  # fewer classes than 60: way follows the data
    from edgemeta.runtime.preprocess import PreprocessSpec

    data = load_source(shapes[0], PreprocessSpec.from_dict(pre))
    mean, std = channel_statistics(data.images)
    # statistics of the training classes (the folder less its validation classes): near the folder's, not (0, 1)
    np.testing.assert_allclose(pre["mean"], mean, atol=0.05)
    np.testing.assert_allclose(pre["std"], std, atol=0.05)
    info = json.loads(_invoke("info", str(colour_run["model"]), "--json"))
    assert info["channels"].startswith("3") and info["preprocess"]["channels"] == 3


@needs_torch
def test_held_out_colour_only_classes_separate(colour_run, shapes):
    from edgemeta.runtime import EmbeddingModel, FewShotClassifier

    held = shapes[1]
    clf = FewShotClassifier(EmbeddingModel(colour_run["model"]))
    pairs = [(a, b) for a in sorted(held.iterdir()) for b in sorted(held.iterdir()) if a.name < b.name]
    pairs = [(a, b) for a, b in pairs if a.name.split("_")[1] == b.name.split("_")[1]]  # same shape
    assert len(pairs) == len(SHAPES)
    right = total = 0
    for a, b in pairs:
        for c in (a, b):
            clf.remove(c.name) if c.name in clf.labels else None
            clf.enroll(c.name, sorted(c.iterdir())[:3])
        for c in (a, b):
            for pred in clf.predict(sorted(c.iterdir())[3:]):
                right += pred[0].label == c.name
                total += 1
        clf.remove(a.name), clf.remove(b.name)
    assert right / total > 0.8, (right, total)  # chance: 0.5


@needs_torch
def test_int8_eval_bake_and_bench_take_three_channels(colour_run, shapes):
    tmp, model, held = colour_run["dir"], colour_run["model"], shapes[1]
    _invoke("export", str(colour_run["run"]), "--out", str(tmp / "m8.onnx"), "--int8", "--force", "--episodes", "20")
    for m in (model, tmp / "m8.onnx"):
        result = json.loads(_invoke("eval", "--model", str(m), "--data", str(held), "--way", "5", "--shot", "1",
                                    "--query", "3", "--episodes", "20", "--json"))  # fmt: skip
        assert result["accuracy"] > 0.2 + 2 * result["ci95"] and result["way"] == 5
    store = tmp / "store.npz"
    for label in ("red_square", "green_square"):
        _invoke(
            "enroll",
            "--model",
            str(model),
            "--store",
            str(store),
            label,
            *map(str, sorted((held / label).iterdir())[:3]),
        )
    _invoke("bake", "--model", str(model), "--store", str(store), "--out", str(tmp / "baked.onnx"))
    out = json.loads(_invoke("classify", "--model", str(model), "--store", str(store), "--json",
                             str(sorted((held / "red_square").iterdir())[5])))  # fmt: skip
    assert out["results"][0]["nearest"]["label"] in ("red_square", "green_square")
    report = json.loads(_invoke("bench", "--model", str(model), "--compare", str(tmp / "m8.onnx"), "--iterations", "5",
                                "--warmup", "1", "--rounds", "1", "--batches", "4", "--cold-runs", "0",
                                "--idle-runs", "0", "--json"))  # fmt: skip
    assert report["model"]["input"] == report["compare"]["input"] == [3, 16, 16]
    assert all(v > 0 for v in report["throughput"]["4"].values())


@needs_torch
def test_init_fine_tunes_from_an_rgb_model(colour_run, shapes):
    out = colour_run["dir"] / "finetune"
    args = _tiny_train_args(shapes[0], out)
    args[args.index("--episodes") + 1] = "4"
    _invoke(*args, "--init", str(colour_run["model"]))
    config = json.loads((out / "config.json").read_text())
    parent = json.loads((colour_run["run"] / "config.json").read_text())["preprocess"]
    assert config["preprocess"] == parent  # channels, mean and std of the initial model


@needs_torch
@pytest.mark.parametrize(
    "args,message",
    [
        (["--channels", "3", "--mean", "0.5"], "--mean needs 3 values"),
        (["--way", "40"], "leave it out"),
    ],
)
def test_train_errors(shapes, tmp_path, args, message):
    result = CliRunner().invoke(main, _tiny_train_args(shapes[0], tmp_path / "run") + args)
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
