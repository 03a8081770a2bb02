"""edgemeta export: a tiny random Conv-4 checkpoint -> verified ONNX, loaded by the runtime."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.torch]

SPEC = {
    "size": [28, 28],
    "channels": 1,
    "resize": "bilinear",
    "polarity": "light_on_dark",
    "auto_polarity": True,
    "mean": [0.1],
    "std": [0.3],
    "aspect": "stretch",
}


def make_checkpoint(path: Path, metric: str = "sqeuclidean", data: str = "/nonexistent/data", seed: int = 0) -> Path:
    """A tiny randomly initialized Conv-4 (8 channels) saved in the edgemeta-checkpoint format."""
    import torch

    from edgemeta.train.backbones import build_backbone

    torch.manual_seed(seed)
    net = build_backbone("conv4", 1, hidden=8, out_channels=8)
    with torch.no_grad():  # non-trivial BatchNorm statistics, so folding them is exercised
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
                m.bias.uniform_(-0.1, 0.1)
    config = {
        "backbone": "conv4",
        "backbone_kwargs": {"hidden": 8, "out_channels": 8},
        "in_channels": 1,
        "preprocess": SPEC,
        "metric": metric,
        "embedding_dim": 8,
        "data": data,
        "split": None,
        "way": 5,
        "shot": 1,
        "query": 5,
        "episodes": 10,
        "seed": seed,
    }
    torch.save(
        {
            "format": "edgemeta-checkpoint",
            "version": 1,
            "config": config,
            "model": net.state_dict(),
            "episode": 10,
            "best_val": {"accuracy": 0.5, "ci95": 0.01, "episode": 10},
        },
        path,
    )
    return path


def cli(*args: str):
    from click.testing import CliRunner

    from edgemeta.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(checkpoint, model.onnx, JSON report) from one default (dynamo) export."""
    root = tmp_path_factory.mktemp("export")
    run = root / "run"
    run.mkdir()
    make_checkpoint(run / "best.pt")
    out = root / "model.onnx"
    result = cli("export", run, "--out", out, "--json", "--episodes", "50")
    assert result.exit_code == 0, result.output
    return run / "best.pt", out, json.loads(result.stdout.strip().splitlines()[-1])


def torch_embed(ckpt: Path, x: np.ndarray) -> np.ndarray:
    import torch

    from edgemeta.export.checkpoint import build_model, load_checkpoint

    with torch.inference_mode():
        return build_model(load_checkpoint(ckpt))(torch.from_numpy(x)).numpy()


def test_runtime_loads_export_and_matches_torch(exported) -> None:
    from edgemeta.runtime import EmbeddingModel

    ckpt, out, report = exported
    model = EmbeddingModel(out)
    x = np.random.default_rng(3).standard_normal((7, 1, 28, 28)).astype(np.float32)
    assert np.abs(model.run_input(x) - torch_embed(ckpt, x)).max() <= 1e-4
    assert report["parity"]["max_abs_diff"] <= 1e-4
    assert report["parity"]["decision_agreement"] == 1.0
    assert report["exporter"] in ("dynamo", "legacy") and report["opset"] >= 17
    assert report["trimmed_convs"] == 2  # 7x7 and 3x3 maps: their last row and column are never pooled
    if os.name == "posix":
        assert out.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_dynamic_batch(exported, batch: int) -> None:
    from edgemeta.runtime import EmbeddingModel

    images = np.random.default_rng(batch).integers(0, 256, (batch, 28, 28), dtype=np.uint8)
    assert EmbeddingModel(exported[1]).embed(images).shape == (batch, 8)


def test_metadata(exported) -> None:
    import onnx

    from edgemeta.runtime import EmbeddingModel

    _, out, _ = exported
    meta = EmbeddingModel(out).meta
    assert meta.preprocess.to_dict() == SPEC
    assert (meta.embedding_dim, meta.metric, meta.input_name, meta.output_name) == (
        8,
        "sqeuclidean",
        "images",
        "embeddings",
    )
    assert meta.training["backbone"] == "conv4" and meta.training["precision"] == "fp32"
    assert meta.accuracy["best_val"]["accuracy"] == 0.5
    assert meta.threshold is None  # synthetic verification data: no threshold is invented
    assert meta.support_shift == 1  # the default: enrolled images averaged over 1-pixel shifts
    assert meta.accuracy["rejection"]["method"] == "none"
    proto = onnx.load(out)
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # symbolic batch axis
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_legacy_exporter_and_user_threshold(tmp_path) -> None:
    from edgemeta.runtime import EmbeddingModel

    ckpt = make_checkpoint(tmp_path / "c.pt", metric="cosine", seed=1)
    out = tmp_path / "legacy.onnx"
    result = cli("export", ckpt, "--out", out, "--exporter", "legacy", "--threshold", "0.5", "--episodes", "20")
    assert result.exit_code == 0, result.output
    meta = EmbeddingModel(out).meta
    assert (meta.metric, meta.threshold, meta.training["exporter"]) == ("cosine", 0.5, "legacy")
    import onnx

    convs = [n for n in onnx.load(str(out)).graph.node if n.op_type == "Conv"]
    pads = [list(next(a.ints for a in n.attribute if a.name == "pads")) for n in convs]
    assert pads == [[1, 1, 1, 1]] * 2 + [[1, 1, 0, 0]] * 2  # trimmed through this exporter's graph too


def test_threshold_chosen_on_real_data(tmp_path) -> None:
    """A folder of class sub-folders as --data: the rejection rule is calibrated on it (open-set episodes)."""
    from PIL import Image

    from edgemeta.export.pipeline import ExportOptions, run_export
    from edgemeta.export.validation_data import synthetic_images
    from edgemeta.runtime import EmbeddingModel
    from edgemeta.runtime.preprocess import PreprocessSpec

    images, targets = synthetic_images(PreprocessSpec.from_dict(SPEC), classes=12, per_class=12, seed=5)
    for i, (img, t) in enumerate(zip(images, targets)):
        folder = tmp_path / "data" / f"class{t:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[..., 0]).save(folder / f"{i}.png")
    ckpt = make_checkpoint(tmp_path / "c.pt")
    report = run_export(
        ckpt, ExportOptions(out=tmp_path / "m.onnx", data=str(tmp_path / "data"), exporter="legacy", episodes=20)
    )
    how = report["threshold_method"]
    assert report["threshold"] > 0 and how["method"] == "open-set episodes"
    assert report["data"]["synthetic"] is False and how["support_shift"] == 1
    rule = EmbeddingModel(tmp_path / "m.onnx").meta.rejection
    assert rule is not None and 0 < rule.strict <= rule.balanced and rule.calibration["support_shift"] == 1
    assert {(k["way"], k["shot"]) for k in how["kinds"]} == {(5, 1), (5, 2), (5, 5)}  # 12 classes: no 20-way
    plain = run_export(
        ckpt,
        ExportOptions(
            out=tmp_path / "p.onnx", data=str(tmp_path / "data"), exporter="legacy", episodes=20, support_shift=0
        ),
    )
    # prototypes of shifted views lie elsewhere, so the threshold was chosen on what enroll makes
    assert plain["threshold_method"]["support_shift"] == 0 and plain["threshold"] != report["threshold"]


@pytest.mark.parametrize("kind", ["corrupted", "state_dict", "pickle", "text"])
def test_bad_checkpoints(tmp_path, kind: str) -> None:
    import pickle

    import torch

    path = make_checkpoint(tmp_path / "c.pt")
    if kind == "corrupted":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "state_dict":
        torch.save(torch.load(path, weights_only=True)["model"], path)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"format": "edgemeta-checkpoint", "obj": Path("x")}))
    else:
        path.write_text("not a checkpoint")
    out = tmp_path / "m.onnx"
    result = cli("export", path, "--out", out)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output and not out.exists()
    assert list(tmp_path.glob(".m.onnx*")) == []


def test_missing_checkpoint_and_unwritable_output(tmp_path) -> None:
    result = cli("export", tmp_path / "nope", "--out", tmp_path / "m.onnx")
    assert result.exit_code == 1 and result.output.startswith("Error: ") and "not found" in result.output
    ckpt = make_checkpoint(tmp_path / "c.pt")
    (tmp_path / "file").write_text("x")
    for out in (tmp_path / "file" / "m.onnx", tmp_path / "no_dir" / "m.onnx", tmp_path):
        result = cli("export", ckpt, "--out", out)
        assert result.exit_code == 1 and result.output.startswith("Error: "), result.output
        assert len(result.output.strip().splitlines()) == 1


def test_failed_verification_leaves_no_file(tmp_path, monkeypatch) -> None:
    from edgemeta.export import pipeline
    from edgemeta.export.pipeline import ExportOptions, run_export
    from edgemeta.runtime.errors import ExportError

    out = tmp_path / "m.onnx"

    def broken(*args, **kwargs):
        raise ExportError("injected verification failure")

    monkeypatch.setattr(pipeline, "compare", broken)
    with pytest.raises(ExportError, match="injected"):
        run_export(make_checkpoint(tmp_path / "c.pt"), ExportOptions(out=out, exporter="legacy"))
    assert list(tmp_path.iterdir()) == [tmp_path / "c.pt"]
