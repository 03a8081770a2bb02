"""``docs/errors.md`` is the contract for bad input: this test parses its tables and runs one
CliRunner case per row, so the table and the code cannot drift apart.

A row: ``| command | bad input | arguments | exit | message |`` (+ ``torch`` in the last column
when the row needs torch). Arguments are split like a shell line; ``{tmp}`` and the file names
below are made by ``make_files``. The message column is the stable prefix of the text after
``Error: `` (paths and library details follow it).
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest import torch_available
from edgemeta.cli import main
from tiny_models import SIZE, class_batch, linear_model

TABLE = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
ROW = re.compile(r"^\|\s*`?([a-z]+)`?\s*\|(.*)\|\s*`(.*)`\s*\|\s*(\d+)\s*\|\s*`(.*)`\s*\|\s*(torch)?\s*\|\s*$")


def rows() -> list[tuple[str, str, str, int, str, bool]]:
    """(command, bad input, arguments, exit code, message prefix, needs torch) per table row."""
    out = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            cmd, what, args, code, message, torch = m.groups()
            out.append((cmd, what.strip(), args.replace("\\|", "|"), int(code), message.replace("\\|", "|"), bool(torch)))
    return out


def make_files(tmp: Path) -> None:
    """Every file the table's rows name."""
    from edgemeta.runtime import EmbeddingModel, FewShotClassifier

    model = linear_model(tmp / "m.onnx")
    linear_model(tmp / "other.onnx", weights=3 * np.eye(SIZE * SIZE))
    linear_model(tmp / "nometa.onnx", with_metadata=False)
    (tmp / "not.onnx").write_text("definitely not onnx")
    for k in range(3):
        folder = tmp / "data" / f"c{k}"
        folder.mkdir(parents=True)
        for i, img in enumerate(class_batch(k, 4)):
            Image.fromarray(img).save(folder / f"{i}.png")
    Image.fromarray(class_batch(0, 1)[0]).save(tmp / "img.png")
    clf = FewShotClassifier(EmbeddingModel(model))
    for k in range(3):
        clf.enroll(f"c{k}", class_batch(k, 2))
    clf.save(tmp / "s.npz")
    FewShotClassifier(EmbeddingModel(model)).save(tmp / "empty.npz")
    (tmp / "corrupt.npz").write_bytes(b"PK\x03\x04garbage")
    (tmp / "trunc.npz").write_bytes((tmp / "s.npz").read_bytes()[:200])
    with np.load(tmp / "s.npz") as z:
        np.savez(tmp / "newer.npz", **{**dict(z), "format_version": np.int64(99)})
    (tmp / "zero.png").write_bytes(b"")
    (tmp / "text.png").write_text("not an image")
    good = (tmp / "img.png").read_bytes()
    (tmp / "trunc.png").write_bytes(good[: len(good) // 2])
    Image.new("1", (9000, 9000)).save(tmp / "bomb.png")
    (tmp / "emptydir").mkdir()
    (tmp / "garbage.pt").write_bytes(b"not a checkpoint")
    (tmp / "run").mkdir()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("errors")
    make_files(tmp)
    return tmp


def _id(row) -> str:
    return f"{row[0]}: {row[1]}"


ROWS = rows()


def test_table_covers_every_command():
    assert {r[0] for r in ROWS} >= {"train", "export", "bake", "eval", "enroll", "classify", "info", "bench", "demo"}


@pytest.mark.parametrize("row", ROWS, ids=[_id(r) for r in ROWS])
def test_bad_input_row(files, row, monkeypatch):
    command, _, args, code, message, needs_torch = row
    if needs_torch and not torch_available():
        pytest.skip("row needs torch")
    monkeypatch.chdir(files)
    argv = [command] + [a.replace("{tmp}", str(files)) for a in shlex.split(args)]
    before = {p: p.read_bytes() for p in files.glob("*.npz")}
    res = CliRunner().invoke(main, argv)
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == code, res.output
    if code == 2:  # click's usage errors: Usage and Try lines, then the one Error line
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert lines[0][len("Error: "):].startswith(message.replace("{tmp}", str(files))), res.output
    assert "Traceback" not in res.output
    assert {p: p.read_bytes() for p in files.glob("*.npz")} == before, "a bad input changed a store"
