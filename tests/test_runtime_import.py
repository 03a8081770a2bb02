"""The runtime layer stays torch-free, and the light commands' help works without torch."""

from __future__ import annotations

import subprocess
import sys

BLOCK_HEAVY = "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; "


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_runtime_imports_neither_torch_nor_onnx():
    res = _python(
        "import sys, edgemeta.runtime, edgemeta.runtime.classifier, edgemeta.runtime.store; "
        "print(sorted(m for m in ('torch', 'onnx') if m in sys.modules))"
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_help_works_with_torch_unavailable():
    for args in ([], ["enroll"], ["remove"], ["classify"], ["info"]):
        code = BLOCK_HEAVY + f"from edgemeta.cli import main; main({args + ['--help']!r})"
        res = _python(code)
        assert res.returncode == 0, (args, res.stderr)
        assert "Usage:" in res.stdout
