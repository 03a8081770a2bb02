"""The options the commands share: defined once (edgemeta/commands/options.py), choices taken from
the constants that define them, and ``edgemeta --help`` still imports none of the heavy layers."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from edgemeta.cli import LAZY_COMMANDS, main

COMMANDS = Path(__file__).resolve().parents[1] / "edgemeta" / "commands"
SHARED = (
    "--model",
    "--store",
    "--threads",
    "--query-views",
    "--reject",
    "--far",
    "--split",
    "--json",
    "--lock-timeout",
)


def _params(name: str) -> dict[str, click.Parameter]:
    module, attr, _ = LAZY_COMMANDS[name]
    return {p.name: p for p in getattr(importlib.import_module(module), attr).params if p.name}


def test_top_level_help_imports_no_heavy_module():
    code = (
        "import sys\nfrom edgemeta.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('numpy', 'onnxruntime', 'PIL', 'torch', 'onnx') if m in sys.modules))"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "Commands:" in res.stdout and res.stdout.strip().splitlines()[-1] == "[]"


def test_shared_options_are_defined_in_the_options_module_only():
    for path in sorted(COMMANDS.glob("*.py")):
        if path.name == "options.py":
            continue
        declared = re.findall(r"click\.option\(\s*\"(--[a-z-]+)\"", path.read_text())
        assert not set(declared) & set(SHARED), (path.name, set(declared) & set(SHARED))


def test_choices_and_defaults_come_from_their_constants():
    from edgemeta.lab.datasets import SPLITS
    from edgemeta.runtime.preprocess import QUERY_VIEW_OFFSETS
    from edgemeta.runtime.rejection import OPERATING_POINTS
    from edgemeta.runtime.store_lock import DEFAULT_LOCK_TIMEOUT

    seen = set()
    for name in LAZY_COMMANDS:
        params = _params(name)
        if "query_views" in params:
            assert list(params["query_views"].type.choices) == [str(v) for v in sorted(QUERY_VIEW_OFFSETS)], name
        if "reject" in params:
            assert tuple(params["reject"].type.choices) == OPERATING_POINTS, name
        if "lock_timeout" in params:
            assert params["lock_timeout"].default == DEFAULT_LOCK_TIMEOUT, name
        if "split" in params:
            assert all(s in params["split"].help for s in SPLITS), name
        seen.update(params)
    assert {
        "query_views",
        "reject",
        "far",
        "lock_timeout",
        "split",
        "model_path",
        "store_path",
        "threads",
        "as_json",
    } <= seen


@pytest.mark.parametrize("command", ["train", "eval", "export"])
def test_unknown_split_is_one_line_error(command, tmp_path):
    args = {
        "train": ["--data", str(tmp_path), "--out", str(tmp_path / "run")],
        "eval": ["--data", str(tmp_path)],
        "export": [str(tmp_path), "--out", str(tmp_path / "m.onnx")],
    }
    res = CliRunner().invoke(main, [command, *args[command], "--split", "lake"])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.startswith("Error: unknown split 'lake'; one of background, evaluation,"), res.output
    assert not (tmp_path / "run").exists()


def test_model_option_is_the_same_for_every_command():
    for name in ("enroll", "classify", "eval", "bench", "demo", "bake"):
        param = _params(name)["model_path"]
        assert "--model" in param.opts and param.default is None, name
        assert isinstance(param.type, click.Path) and not param.type.dir_okay, name
