"""``docs/errors.md`` is the contract for bad input: this test parses its tables and runs one
CliRunner case per row, so the table and the code cannot drift apart.

A row: ``| command | bad input | arguments | exit | message |`` (+ ``torch`` in the last column
when the row needs torch; ``no-torchvision``: the row runs with torchvision imports failing).
Downloads of named data sources go to ``fetch_fixtures.offline_downloads``. Arguments are split like
a shell line; ``{tmp}`` and the file names below are made by ``make_files``. The message column is
the stable prefix of the text after ``Error: `` (paths and library details follow it).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import torch_available
from fetch_fixtures import block_torchvision, offline_downloads
from PIL import Image
from tiny_models import SIZE, class_batch, linear_model, metadata

from edgemeta.cli import main

TABLE = Path(__file__).resolve().parents[1] / "docs" / "errors.md"
_HELD_LOCKS: list = []
PROGRESS_BAR = re.compile(r"^\s*\d+%\|")
ENV_WORD = re.compile(r"^[A-Z][A-Z0-9_]*=")
ROW = re.compile(
    r"^\|\s*`?([a-z]+)`?\s*\|(.*)\|\s*`(.*)`\s*\|\s*(\d+)\s*\|\s*`(.*)`\s*\|\s*(torch|no-torchvision)?\s*\|\s*$"
)


def rows() -> list[tuple[str, str, str, int, str, str]]:
    """(command, bad input, arguments, exit code, message prefix, needs: "", "torch" or "no-torchvision") per row."""
    out = []
    for line in TABLE.read_text(encoding="utf-8").splitlines():
        m = ROW.match(line)
        if m:
            cmd, what, args, code, message, torch = m.groups()
            out.append(
                (cmd, what.strip(), args.replace("\\|", "|"), int(code), message.replace("\\|", "|"), torch or "")
            )
    return out


def make_files(tmp: Path) -> None:
    """Every file the table's rows name."""
    from edgemeta.runtime import EmbeddingModel, FewShotClassifier
    from edgemeta.runtime.store_lock import store_lock

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
    (tmp / "oldrun").mkdir()  # a run folder: train refuses it without --resume or --overwrite
    (tmp / "oldrun" / "metrics.jsonl").write_text('{"episode": 1, "loss": 1.0}\n')
    Image.new("L", (1, 1)).save(tmp / "tiny.png")
    from edgemeta.export.bake import bake  # onnx only, as tiny_models

    bake(EmbeddingModel(model), tmp / "s.npz", tmp / "baked.onnx")
    (tmp / "ro.npz").write_bytes((tmp / "s.npz").read_bytes())
    (tmp / "ro.npz").chmod(0o444)
    (tmp / "locked.npz").write_bytes((tmp / "s.npz").read_bytes())
    held = store_lock(tmp / "locked.npz", timeout=0)
    held.__enter__()  # held until the test process ends: rows on locked.npz must time out
    _HELD_LOCKS.append(held)
    (tmp / "run").mkdir()
    network = {"id": "ab" * 32, "reference": True}  # net8.onnx: the same network, too little agreement
    net = linear_model(tmp / "net.onnx", meta=metadata(SIZE * SIZE, network=network))
    linear_model(
        tmp / "net8.onnx",
        weights=1.001 * np.eye(SIZE * SIZE),
        meta=metadata(SIZE * SIZE, network={**network, "reference": False, "agreement": {"top1": 0.98}}),
    )
    clf = FewShotClassifier(EmbeddingModel(net))
    clf.enroll("c0", class_batch(0, 2))
    clf.save(tmp / "net.npz")
    rule = {
        "version": 1,
        "shot_coef": 0.5,
        "class_coef": 0.1,
        "tau": {"strict": 0.05, "balanced": 0.1},
        "far_table": [[0.01, 0.05], [0.3, 0.2]],
    }
    linear_model(tmp / "rule.onnx", meta=metadata(SIZE * SIZE, rejection=rule))
    linear_model(tmp / "newrule.onnx", meta=metadata(SIZE * SIZE, rejection={**rule, "version": 2}))
    squash = metadata(SIZE * SIZE)
    squash["preprocess"]["aspect"] = "squash"
    linear_model(tmp / "badaspect.onnx", meta=squash)
    nearest = metadata(SIZE * SIZE)
    nearest["preprocess"]["resize"] = "nearest"
    linear_model(tmp / "nearest.onnx", meta=nearest)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Iterator[Path]:
    tmp = tmp_path_factory.mktemp("errors")
    make_files(tmp)
    with offline_downloads(tmp):
        yield tmp


def _id(row) -> str:
    return f"{row[0]}: {row[1]}"


ROWS = rows()


def test_table_covers_every_command():
    assert {r[0] for r in ROWS} >= {"train", "export", "bake", "eval", "enroll", "classify", "info", "bench", "demo"}


@pytest.mark.parametrize("row", ROWS, ids=[_id(r) for r in ROWS])
def test_bad_input_row(files, row, monkeypatch):
    command, _, args, code, message, needs = row
    if needs == "torch" and not torch_available():
        pytest.skip("row needs torch")
    if needs == "no-torchvision":
        block_torchvision(monkeypatch)
    monkeypatch.chdir(files)
    words = [a.replace("{tmp}", str(files)) for a in shlex.split(args)]
    env = {}  # leading NAME=VALUE words: environment variables for the row
    while words and ENV_WORD.match(words[0]):
        name, _, value = words.pop(0).partition("=")
        env[name] = value
    argv = [command] + words
    before = {p: p.read_bytes() for p in files.glob("*.npz")}
    res = CliRunner().invoke(main, argv, env=env)
    # A download's progress bar (stderr, tqdm's "NN%|") may come before the error line.
    lines = [line for line in res.output.splitlines() if line.strip() and not PROGRESS_BAR.match(line)]
    assert res.exit_code == code, res.output
    if code == 2:  # click's usage errors: Usage and Try lines, then the one Error line
        lines = lines[-1:]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert lines[0][len("Error: ") :].startswith(message.replace("{tmp}", str(files))), res.output
    assert "Traceback" not in res.output
    assert {p: p.read_bytes() for p in files.glob("*.npz")} == before, "a bad input changed a store"
