"""``edgemeta demo`` on the shipped examples (a tiny model here; the shipped model when present)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from PIL import Image
from tiny_models import linear_model

from edgemeta.cli import main
from edgemeta.runtime import default_model_path


def test_demo_runs_and_writes_contact_sheet(tmp_path):
    model = linear_model(tmp_path / "m.onnx")
    sheet = tmp_path / "sheet.png"
    res = CliRunner().invoke(main, ["demo", "--model", str(model), "--out", str(sheet), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert [r["set"] for r in doc["results"]] == ["omniglot", "mnist"]
    omniglot = doc["results"][0]
    assert omniglot["classes"] == 10 and omniglot["shots"] == 1 and len(omniglot["rows"]) == 50
    assert Image.open(sheet).size[0] > 0


def test_demo_table_for_people(tmp_path):
    model = linear_model(tmp_path / "m.onnx")
    res = CliRunner().invoke(main, ["demo", "--model", str(model), "--out", str(tmp_path / "s.png"), "--set", "mnist"])
    assert res.exit_code == 0, res.output
    assert "accuracy:" in res.output and "ms per image" in res.output and "contact sheet:" in res.output


@pytest.mark.skipif(not default_model_path().is_file(), reason="the default model is not built yet")
def test_demo_with_shipped_model_recognizes_unseen_characters(tmp_path):
    res = CliRunner().invoke(main, ["demo", "--out", str(tmp_path / "s.png"), "--json"])
    assert res.exit_code == 0, res.output
    omniglot, mnist = json.loads(res.output)["results"]
    for r, nearest in ((omniglot, 0.9), (mnist, 0.7)):
        n = len(r["rows"])
        assert r["nearest_right"] >= nearest * n  # the nearest class, as before the rejection rule
        # the demo applies the rule: "unknown" answers count as not right (MNIST is a new domain)
        assert r["unknown"] == sum(not row["accepted"] for row in r["rows"]) and r["accuracy"] * n <= r["nearest_right"]
    assert omniglot["accuracy"] >= 0.8 and mnist["accuracy"] >= 0.5
