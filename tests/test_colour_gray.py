"""Grayscale models of colour photos (#24): the photo encoding (polarity none, mean/std from the data,
photometric augmentation) that lets a gray baseline learn shape, ink runs (Omniglot) trained exactly
as before, and ``edgemeta train --aspect``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import needs_torch
from tiny_models import write_class_folders

from edgemeta.cli import main
from edgemeta.lab.colour_shapes import write_colour_shapes
from edgemeta.runtime.preprocess import PreprocessSpec

COLOURS = ["red", "green", "blue", "yellow"]
SHAPES = ["circle", "square", "triangle", "cross"]


def _train_args(data: Path, out: Path, episodes: int) -> list[str]:
    return [
        "train", "--data", str(data), "--out", str(out), "--size", "16", "--episodes", str(episodes),
        "--shot", "1", "--query", "3", "--val-every", str(episodes), "--val-episodes", "10", "--test-way", "2",
        "--no-progress", "--json",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("colour_shapes_gray")
    return write_colour_shapes(root, 12, seed=2, colours=COLOURS, shapes=SHAPES, max_size=(96, 72))


@pytest.fixture(scope="module")
def gray_run(shapes, tmp_path_factory) -> dict:
    """A tiny grayscale run on the colour shapes (``--aspect center_crop``) and its export. Whether a
    gray model learns shape is measured at scale (benchmarks/colour_heldout.py): a few dozen episodes
    on a dozen images per class do not get there."""
    tmp = tmp_path_factory.mktemp("gray_run")
    args = _train_args(shapes[0], tmp / "run", 8) + [
        "--channels",
        "1",
        "--metric",
        "cosine",
        "--aspect",
        "center_crop",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    model = tmp / "model.onnx"
    exported = CliRunner().invoke(main, ["export", str(tmp / "run"), "--out", str(model), "--episodes", "20"])
    assert exported.exit_code == 0, exported.output
    return {"run": tmp / "run", "model": model, "stderr": result.stderr}


@needs_torch
def test_gray_run_on_colour_photos_takes_the_photo_encoding(gray_run, shapes):
    from edgemeta.lab.datasets import load_source
    from edgemeta.train.input_spec import channel_statistics

    assert "grayscale run on colour photos: polarity none" in gray_run["stderr"]
    pre = json.loads((gray_run["run"] / "config.json").read_text())["preprocess"]
    assert pre["channels"] == 1 and pre["polarity"] == "none" and pre["aspect"] == "center_crop"
    mean, std = channel_statistics(load_source(shapes[0], PreprocessSpec.from_dict(pre)).images)
    np.testing.assert_allclose(pre["mean"], mean, atol=0.05)  # the training classes' statistics, not (0, 1)
    np.testing.assert_allclose(pre["std"], std, atol=0.05)
    info = json.loads(CliRunner().invoke(main, ["info", str(gray_run["model"]), "--json"]).stdout)
    assert info["preprocess"]["aspect"] == "center_crop" and info["preprocess"]["polarity"] == "none"


@needs_torch
def test_gray_photo_training_images_are_never_inverted(gray_run, shapes):
    """The border rule is a coin flip on busy backgrounds: under the ink encoding about half the
    photos would train inverted (shape in either polarity at random); the photo encoding keeps them all."""
    from edgemeta.lab.datasets import load_source

    pre = PreprocessSpec.from_dict(json.loads((gray_run["run"] / "config.json").read_text())["preprocess"])
    plain = load_source(shapes[0], replace(pre, polarity="light_on_dark", auto_polarity=False)).images
    assert np.array_equal(load_source(shapes[0], pre).images, plain)
    ink = load_source(shapes[0], replace(pre, polarity="light_on_dark", auto_polarity=True)).images
    inverted = (ink != plain).any(axis=(1, 2, 3)).mean()
    assert 0.2 < inverted < 0.8, inverted


@needs_torch
def test_ink_runs_train_exactly_as_before(tmp_path):
    """Omniglot (and any grayscale folder) keeps light_on_dark with auto polarity, (0, 1), stretch,
    stroke-width augmentation and a black fill: the shipped models' recipes are unchanged."""
    import torch

    from edgemeta.train.augment import PRESETS
    from edgemeta.train.config import TrainConfig
    from edgemeta.train.input_spec import fit_statistics, preprocess_spec, resolve_input
    from edgemeta.train.loop import InputPipe

    ink = write_class_folders(tmp_path / "ink", classes=3, per_class=2)
    for data, size in (("omniglot", 28), (str(ink), 16)):
        cfg = TrainConfig(data=data, out=str(tmp_path / "run"), size=size)
        resolve_input(cfg)
        spec = fit_statistics(cfg, np.full((4, size, size, 1), 200, dtype=np.uint8))
        assert cfg.channels == 1 and cfg.polarity == "" and not cfg.mean and not cfg.std
        assert spec == preprocess_spec(cfg) == PreprocessSpec(size=(size, size))
        pipe = InputPipe(spec, torch.device("cpu"), "full")
        assert pipe.augment == PRESETS["full"] and pipe.fill is None


@needs_torch
def test_gray_photo_augmentation_is_photometric():
    import torch

    from edgemeta.train.augment import PRESETS, augment, for_channels

    cfg = for_channels(PRESETS["full"], 1, photo=True)
    assert cfg.dilate == cfg.erode == cfg.saturation == 0 and cfg.brightness > 0 and cfg.contrast > 0
    assert for_channels(PRESETS["affine"], 1, photo=True) == PRESETS["affine"]  # no stroke change to trade
    g = torch.Generator().manual_seed(0)
    x = 0.3 + 0.4 * torch.rand(32, 1, 8, 8, generator=g)
    y = augment(x, cfg, g, torch.tensor([0.4]).view(1, 1, 1, 1))
    assert y.shape == x.shape and not torch.allclose(x, y) and 0 <= y.min() and y.max() <= 1


@needs_torch
def test_train_aspect_option(shapes, tmp_path):
    from edgemeta.commands.train_cmd import train
    from edgemeta.runtime.aspect import ASPECTS

    assert tuple(next(p for p in train.params if p.name == "aspect").type.choices) == ASPECTS
    result = CliRunner().invoke(main, _train_args(shapes[0], tmp_path / "run", 2) + ["--aspect", "squash"])
    assert result.exit_code == 2 and "'squash' is not one of 'stretch', 'center_crop', 'letterbox'" in result.output
    result = CliRunner().invoke(main, _train_args(shapes[0], tmp_path / "run", 2) + ["--aspect", "stretch"])
    assert result.exit_code == 0, result.output
    pre = json.loads((tmp_path / "run" / "config.json").read_text())["preprocess"]
    assert pre["channels"] == 3 and pre["aspect"] == "stretch"  # colour, but the aspect given
