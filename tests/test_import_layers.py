"""The layering contracts in pyproject.toml hold, and a layer importing one above it is caught."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("layout_check", REPO / "scripts" / "layout_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.skipif(
    _script().find_tool("lint-imports") is None, reason="import-linter not installed (pip install -e '.[dev]')"
)


def _tree(script, tmp_path: Path) -> Path:
    script.link_tree(script.package_dirs(), tmp_path)
    return tmp_path


def test_the_link_tree_holds_every_layer(tmp_path):
    tree = _tree(_script(), tmp_path)
    for layer in ("commands", "runtime", "lab", "train", "export"):
        assert (tree / "edgemeta" / layer / "__init__.py").is_file(), layer
    assert (tree / "edgemeta" / "cli.py").is_file()


def test_the_layering_contracts_hold(tmp_path):
    script = _script()
    res = script.run_tool("lint-imports", _tree(script, tmp_path), [])
    assert res.returncode == 0, res.stdout + res.stderr
    assert "0 broken" in res.stdout


@pytest.mark.parametrize(
    ("layer", "imported", "contract"),
    [
        ("runtime", "edgemeta.lab.evaluation", "no layer imports one above it"),
        ("lab", "edgemeta.train.loop", "no layer imports one above it"),
        ("train", "edgemeta.export.verify", "no layer imports one above it"),
        ("export", "edgemeta.train.loop", "export does not import train"),
        ("runtime", "onnx", "the device runtime imports no training or export dependency"),
        ("commands", "torch", "the CLI reaches torch/onnx only through train/export"),
    ],
)
def test_an_import_across_the_layers_is_caught(tmp_path, layer, imported, contract):
    script = _script()
    tree = _tree(script, tmp_path)
    # The tree's folders are real folders (only its files link to the checkout): a new file there
    # leaves the checkout as it is. An import inside a function counts too.
    probe = tree / "edgemeta" / layer / "_layer_probe.py"
    assert not probe.parent.is_symlink()
    probe.write_text(f"def f():\n    import {imported}\n")
    res = script.run_tool("lint-imports", tree, [])
    assert res.returncode == 1, res.stdout + res.stderr
    broken = res.stdout[res.stdout.index("Broken contracts") :]
    assert contract in broken and f"edgemeta.{layer}._layer_probe" in broken, res.stdout


def test_tool_output_names_the_checkout_files():
    script = _script()
    line = "edgemeta/runtime/model.py:3: error: x; edgemeta/cli.py:1: note: y"
    assert (
        script.checkout_paths(line, script.package_dirs()) == "runtime/model.py:3: error: x; edgemeta/cli.py:1: note: y"
    )
