"""``edgemeta train --init model.onnx``: fine-tuning an exported file, BatchNorm re-inflated."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import needs_torch, write_toy_mnist

from edgemeta.cli import main

pytestmark = [needs_torch, pytest.mark.torch]


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory):
    """(toy data folder, a trained toy run, its ONNX export)."""
    from test_train_loop import _cfg

    from edgemeta.train.loop import train

    root = tmp_path_factory.mktemp("onnx_init")
    toy = write_toy_mnist(root)
    train(_cfg(toy, root / "run", episodes=12), progress=False)
    out = root / "run.onnx"
    result = CliRunner().invoke(
        main, ["export", str(root / "run"), "--out", str(out), "--exporter", "legacy", "--episodes", "20"]
    )
    assert result.exit_code == 0, result.output
    return toy, root / "run", out


def _folded_conv_weights(path) -> list[np.ndarray]:
    from edgemeta.train.onnx_init import read_onnx

    return [w for w, _ in read_onnx(path)[1]]


def test_reinflated_network_computes_the_file_in_both_modes(exported_run) -> None:
    import torch

    from edgemeta.runtime import EmbeddingModel
    from edgemeta.train.backbones import build_backbone
    from edgemeta.train.onnx_init import calibrate_batchnorm, load_folded, read_onnx

    _, _, onnx_path = exported_run
    net = build_backbone("conv4", 1)
    load_folded(net, read_onnx(onnx_path)[1], onnx_path)
    x = torch.rand(96, 1, 16, 16) * (torch.rand(96, 1, 16, 16) < 0.3)
    calibrate_batchnorm(net, x)
    expected = EmbeddingModel(onnx_path).run_input(x.numpy())
    with torch.no_grad():
        eval_out = net.eval()(x).numpy()
        train_out = net.train()(x).numpy()  # batch statistics = the calibration statistics here
    scale = np.abs(expected).max()
    assert np.abs(eval_out - expected).max() < 1e-4 * scale
    assert np.abs(train_out - expected).max() < 1e-3 * scale
    # The BatchNorm scale is the activations' spread, not 1: train mode normalizes by it.
    assert not torch.allclose(net.encoder[0][1].weight, torch.ones(64))


def test_train_init_from_onnx_starts_at_its_weights(exported_run, tmp_path) -> None:
    import torch
    from test_train_loop import _cfg

    from edgemeta.runtime import EmbeddingModel
    from edgemeta.train.checkpoint import build_model_from_checkpoint, read_checkpoint
    from edgemeta.train.loop import train

    toy, _, onnx_path = exported_run
    train(_cfg(toy, tmp_path / "tuned", episodes=1, lr=1e-9, init=str(onnx_path)), progress=False)
    ckpt = read_checkpoint(tmp_path / "tuned" / "last.pt")
    for i, folded in enumerate(_folded_conv_weights(onnx_path)):
        assert torch.allclose(ckpt["model"][f"encoder.{i}.0.weight"], torch.from_numpy(np.array(folded)), atol=1e-6)
    x = np.random.default_rng(0).random((32, 1, 16, 16), dtype=np.float32)
    expected = EmbeddingModel(onnx_path).run_input(x)
    with torch.no_grad():
        got = build_model_from_checkpoint(ckpt)(torch.from_numpy(x)).numpy()
    # One training step moved the running statistics a little toward one batch's.
    assert np.abs(got - expected).max() < 0.05 * np.abs(expected).max()
    # Fine-tuning at a higher resolution: the weights carry over (checked at the file's size).
    train(_cfg(toy, tmp_path / "bigger", episodes=1, lr=1e-9, size=20, init=str(onnx_path)), progress=False)
    bigger = read_checkpoint(tmp_path / "bigger" / "last.pt")
    assert bigger["config"]["size"] == 20
    assert torch.allclose(bigger["model"]["encoder.0.0.weight"], ckpt["model"]["encoder.0.0.weight"], atol=1e-6)


def _invoke_init(toy, out, init, *extra: str):
    return CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            str(toy),
            "--out",
            str(out),
            "--init",
            str(init),
            "--episodes",
            "1",
            "--size",
            "16",
            "--way",
            "3",
            "--shot",
            "1",
            "--query",
            "2",
            "--no-progress",
            *extra,
        ],
    )


def test_init_from_onnx_refuses_what_it_cannot_use(exported_run, tmp_path) -> None:
    from tiny_models import linear_model, metadata

    toy, _, onnx_path = exported_run
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not an onnx file")
    cases = [
        (onnx_path, ("--backbone", "resnet12"), "its backbone is 'conv4', this run's is 'resnet12'"),
        (linear_model(tmp_path / "plain.onnx", with_metadata=False), (), "not an edgemeta model"),
        (garbage, (), "not a readable ONNX file"),
        (linear_model(tmp_path / "linear.onnx"), (), "its backbone is None"),
        (
            linear_model(tmp_path / "scaled.onnx", meta=_conv4_meta_with(metadata, mean=[0.5])),
            ("--mean", "0"),  # without --mean the run takes the file's encoding
            "its preprocess mean is [0.5], this run's is [0.0]",
        ),
    ]
    for init, extra, message in cases:
        result = _invoke_init(toy, tmp_path / "x", init, *extra)
        assert result.exit_code == 1 and message in result.output, (init, result.output)
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def _conv4_meta_with(metadata, **preprocess):
    meta = metadata(64, training={"backbone": "conv4"})
    meta["preprocess"].update(preprocess)
    return meta


def test_init_from_an_int8_file_asks_for_the_fp32_one(tmp_path) -> None:
    from test_export import make_checkpoint

    from edgemeta.runtime.errors import CheckpointError
    from edgemeta.train.onnx_init import read_onnx

    q = tmp_path / "q.onnx"
    result = CliRunner().invoke(
        main,
        [
            "export",
            str(make_checkpoint(tmp_path / "c.pt")),
            "--out",
            str(q),
            "--int8",
            "--exporter",
            "legacy",
            "--episodes",
            "20",
            "--force",
        ],
    )
    assert result.exit_code == 0, result.output
    with pytest.raises(CheckpointError, match="start from the fp32 file"):
        read_onnx(q)


def test_a_mobilenet_file_with_squeeze_excitation_reinflates(tmp_path) -> None:
    """MobileNetV3's squeeze-excitation convolutions sit outside any nn.Sequential and have no
    BatchNorm: they are matched too, so --init (and bench --vs-torch) take a MobileNet .onnx."""
    import json

    import onnx
    import onnxruntime as ort
    import torch

    from edgemeta.train.backbones import build_backbone
    from edgemeta.train.onnx_init import calibrate_batchnorm, conv_bn_pairs, load_folded, read_onnx

    torch.manual_seed(0)
    source = build_backbone("mobilenet_v3_small", 1)
    calibrate_batchnorm(source, torch.rand(64, 1, 32, 32))  # BatchNorms that are not the identity
    out = tmp_path / "mn.onnx"
    x = torch.rand(16, 1, 32, 32)
    # The legacy exporter folds each BatchNorm into its convolution in eval mode, as edgemeta export does.
    torch.onnx.export(source.eval(), (x,), str(out), dynamo=False, input_names=["images"], output_names=["emb"])
    proto = onnx.load(str(out))
    proto.metadata_props.add(key="edgemeta", value=json.dumps({"training": {"backbone": "mobilenet_v3_small"}}))
    onnx.save(proto, str(out))
    net = build_backbone("mobilenet_v3_small", 1)
    convs = read_onnx(out)[1]
    pairs = conv_bn_pairs(net)
    assert len(pairs) == len(convs) and sum(bn is None for _, _, bn in pairs) > 0  # the SE convolutions
    load_folded(net, convs, out)
    calibrate_batchnorm(net, x)
    expected = ort.InferenceSession(str(out)).run(None, {"images": x.numpy()})[0]
    with torch.no_grad():
        got = net.eval()(x).numpy()
    assert np.abs(got - expected).max() < 1e-3 * np.abs(expected).max()
