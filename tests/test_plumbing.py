"""The shared plumbing: ``runtime.files.atomic_write`` and one home for file writes, sessions and errors."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edgemeta.runtime.files import atomic_write, temp_pattern

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("runtime", "lab", "train", "export", "edgemeta")


def _temps(target: Path) -> list[Path]:
    return list(target.parent.glob(temp_pattern(target.name)))


def test_atomic_write_bytes_or_writer_with_mode(tmp_path):
    target = tmp_path / "a.bin"
    atomic_write(target, b"one")
    assert target.read_bytes() == b"one" and target.stat().st_mode & 0o777 == 0o644
    atomic_write(target, lambda f: f.write(b"two"), mode=0o600, locked=True)
    assert target.read_bytes() == b"two" and target.stat().st_mode & 0o777 == 0o600
    assert _temps(target) == []


@pytest.mark.parametrize("locked", [False, True])
def test_a_failed_write_or_check_leaves_the_old_file_and_no_temp(tmp_path, locked):
    target = tmp_path / "a.bin"
    target.write_bytes(b"old")

    def broken_writer(f):
        f.write(b"half")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        atomic_write(target, broken_writer, locked=locked)
    seen = []

    def refuse(tmp: Path) -> None:
        seen.append(tmp.read_bytes())
        raise ValueError("not verified")

    with pytest.raises(ValueError, match="not verified"):
        atomic_write(target, b"new", refuse, locked=locked)
    assert seen == [b"new"]  # the check saw the whole new file, before any rename
    assert target.read_bytes() == b"old" and _temps(target) == []


def _sources() -> list[tuple[str, str]]:
    return [
        (str(p.relative_to(ROOT)), p.read_text(encoding="utf-8"))
        for layer in LAYERS
        for p in sorted((ROOT / layer).rglob("*.py"))
    ]


@pytest.mark.parametrize(
    "pattern, home",
    [
        (r"\bInferenceSession\(", "runtime/session.py"),
        (r"\bSessionOptions\(", "runtime/session.py"),
        (r"\bos\.fsync\(", "runtime/files.py"),
        (r"^class \w+\((\w*Error|Exception)\)", "runtime/errors.py"),
    ],
)
def test_one_home_per_idea(pattern, home):
    found = {path for path, text in _sources() if re.search(pattern, text, re.MULTILINE)}
    assert found == {home}
