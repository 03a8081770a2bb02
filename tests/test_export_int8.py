"""edgemeta export --int8: quantized, verified with int8 tolerances, accuracy change guarded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import needs_torch

pytestmark = [needs_torch, pytest.mark.torch]


def test_int8_export(tmp_path) -> None:
    import onnx
    from click.testing import CliRunner
    from test_export import make_checkpoint

    from edgemeta.cli import main
    from edgemeta.runtime import EmbeddingModel

    ckpt = make_checkpoint(tmp_path / "c.pt")
    out = tmp_path / "q.onnx"
    result = CliRunner().invoke(
        main, ["export", str(ckpt), "--out", str(out), "--int8", "--exporter", "legacy", "--episodes", "50", "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])["int8"]
    assert report["parity"]["decision_agreement"] >= 0.97 and report["parity"]["mean_cosine"] >= 0.99
    assert report["accuracy"]["change_points"] >= -1.0 and report["throughput_batch64"]["ratio"] > 0
    model = EmbeddingModel(out)
    assert model.meta.training["precision"] == "int8"
    assert "change_points" in model.meta.accuracy["int8"]
    assert any(n.op_type == "QuantizeLinear" for n in onnx.load(out).graph.node)
    for batch in (1, 7, 64):
        assert model.embed(np.zeros((batch, 28, 28), np.uint8)).shape == (batch, 8)


def test_accuracy_loss_is_refused_unless_forced() -> None:
    from edgemeta.export.quantize import accuracy_change
    from edgemeta.runtime.errors import ExportError

    fp32 = {"accuracy": 0.95, "way": 5, "shot": 1, "episodes": 600}
    worse = {**fp32, "accuracy": 0.93}
    with pytest.raises(ExportError, match="--force"):
        accuracy_change(fp32, worse, force=False)
    assert accuracy_change(fp32, worse, force=True)["forced"] is True
    assert accuracy_change(fp32, {**fp32, "accuracy": 0.945}, force=False)["change_points"] == pytest.approx(-0.5)


def test_refused_int8_leaves_no_file(tmp_path, monkeypatch) -> None:
    from test_export import make_checkpoint

    from edgemeta.export import quantize
    from edgemeta.export.pipeline import ExportOptions, run_export
    from edgemeta.runtime.errors import ExportError

    monkeypatch.setattr(quantize, "MAX_ACCURACY_LOSS", -100.0)  # any result counts as too great a loss
    ckpt = make_checkpoint(tmp_path / "c.pt")
    with pytest.raises(ExportError, match="points"):
        run_export(ckpt, ExportOptions(out=tmp_path / "q.onnx", int8=True, exporter="legacy", episodes=20))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]
