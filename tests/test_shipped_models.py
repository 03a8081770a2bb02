"""The shipped model files measured on the real data they were made for (skipped without it).

Bounds sit a few points under the figures in models/README.md (fewer episodes here, so a wider
CI): they catch a wrong, stale or broken file, not a tenth of a point.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from edgemeta.cli import main
from edgemeta.runtime import default_model_path

MODELS = default_model_path().parent

pytestmark = pytest.mark.data


def _eval(model: Path, data: Path, *args: str) -> dict:
    if not model.is_file():
        pytest.skip(f"{model.name} is not built")
    res = CliRunner().invoke(
        main, ["eval", "--model", str(model), "--data", str(data), "--episodes", "200", "--seed", "1", "--json", *args]
    )
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_default_model_on_unseen_evaluation_alphabets(data_dir):
    result = _eval(
        MODELS / "default.onnx", data_dir / "omniglot", "--split", "evaluation", "--way", "20", "--shot", "1"
    )
    assert result["accuracy"] >= 0.93


def test_default_model_on_mnist(data_dir):
    result = _eval(MODELS / "default.onnx", data_dir / "mnist", "--way", "10", "--shot", "5")
    assert result["accuracy"] >= 0.88


def test_vinyals_model_on_the_published_protocol(data_dir):
    result = _eval(
        MODELS / "vinyals.onnx", data_dir / "omniglot", "--split", "vinyals-test", "--way", "20", "--shot", "1"
    )
    assert result["rotations"] and result["classes"] == 1692  # 423 characters x 4 rotations
    assert result["accuracy"] >= 0.95
