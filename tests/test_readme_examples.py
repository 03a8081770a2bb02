"""Every code example in README.md is executed by a test.

- The Python example of "### 4. Embed in an app" runs as written in a fresh interpreter, in a temp
  folder that holds the files and arrays its names refer to (made here: tiny synthetic drawings and
  a copy of the shipped model).
- Every ``edgemeta ...`` line of every ```bash block (also after ``&&``, and under ``torchrun -m
  edgemeta``) is resolved against the click group with ``make_context``: a renamed or removed
  option, command or choice fails. Those that run fast on shipped files (``info``, ``enroll``,
  ``classify``, ``bake``, ``remove``, ``demo``) run, in README order, in a temp folder; the others
  (train, export, bench, eval, web, and any whose model or store is not there) are parsed only.
  pip, npm, cd and pytest lines are not run. The JavaScript example: web/test/readme.test.js.
  ```cpp blocks are not examples this test can build (the C++ section is being replaced).
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgemeta.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUNNABLE = {"info", "enroll", "classify", "bake", "remove", "demo"}
SEPARATORS = {"&&", "||", ";", "|", "(", ")"}


def blocks(language: str) -> list[tuple[str, str]]:
    """(heading above it, body) of every ```language block of the README, in order."""
    text = README.read_text(encoding="utf-8")
    found = []
    for m in re.finditer(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M):
        headings = re.findall(r"^#+ (.+)$", text[: m.start()], flags=re.M)
        found.append((headings[-1] if headings else "(top)", m.group(1)))
    return found


def drawing(kind: str, seed: int, size: int = 40) -> np.ndarray:
    """uint8 [size, size]: dark ink on white paper, a bar ("alpha") or a ring ("beta"), jittered."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size].astype(float)
    cy, cx = size / 2 + rng.uniform(-2, 2, 2)
    if kind == "alpha":
        ink = (abs(xx - cx) < 3) & (abs(yy - cy) < size * 0.35)
    else:
        ink = abs(np.hypot(yy - cy, xx - cx) - size * 0.28) < 2.5
    return np.where(ink, 0, 255).astype(np.uint8)


# Definitions put before the example: the names it uses and does not define.
PRELUDE = """
import numpy as np
from test_readme_examples import drawing

beta_images_uint8 = np.stack([drawing("beta", s) for s in (10, 11, 12)])  # (N, H, W)
query_batch = np.stack([drawing("alpha", 20), drawing("beta", 21)])
more_beta_images = [drawing("beta", s) for s in (30, 31)]
"""

# Checks put after it: what its comments say.
POSTLUDE = """
from edgemeta.runtime import Prediction

assert emb.dtype == np.float32 and emb.shape == (2, model.embedding_dim), (emb.dtype, emb.shape)
assert total.shape == (model.embedding_dim,) and n == 2
after = FewShotClassifier.load("store.npz", model)
assert after.counts() == {"alpha": 2, "beta": 5}, after.counts()
top = clf.predict("query.png", top_k=2)[0]
assert [type(p) for p in top] == [Prediction, Prediction] and top[0].label == "alpha"
print("POSTLUDE OK")
"""


def test_python_example_runs_as_written(tmp_path):
    ((_, code),) = [b for b in blocks("python") if b[0] == "4. Embed in an app"]
    shutil.copy(ROOT / "models" / "default.onnx", tmp_path / "my_model.onnx")
    for name, seed in (("a1.png", 1), ("a2.png", 2), ("query.png", 3)):
        Image.fromarray(drawing("alpha", seed)).save(tmp_path / name)
    (tmp_path / "example.py").write_text(PRELUDE + code + POSTLUDE, encoding="utf-8")
    paths = [str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}  # the prelude imports drawing() from here
    r = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("[[Prediction(label='alpha', score=") and "distance=" in lines[0], lines[0]
    assert re.fullmatch(r"\[('alpha'|None), ('beta'|None)\]", lines[1]), lines[1]
    assert re.fullmatch(r"\[(True|False) (True|False)\]", lines[2]), lines[2]
    assert lines[-1] == "POSTLUDE OK"


def commands(body: str) -> list[list[str]]:
    """The simple commands of a bash block: line continuations joined, comments dropped, split at
    ``&&``, ``||``, ``;``, ``|`` and parentheses; a leading ``VAR=value`` alone is kept as a command."""
    out: list[list[str]] = []
    for line in body.replace("\\\n", " ").splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        current: list[str] = []
        for token in lexer:
            if token in SEPARATORS:
                out.append(current)
                current = []
            else:
                current.append(token)
        out.append(current)
    return [c for c in out if c]


def edgemeta_args(command: list[str], variables: dict[str, str], cwd: Path) -> list[str] | None:
    """The arguments after ``edgemeta`` (or ``-m edgemeta``), variables expanded and globs matched in
    ``cwd`` as bash would; None for other programs (pip, npm, cd, python -m pytest)."""
    words = [re.sub(r"\$\{?(\w+)\}?", lambda m: variables.get(m.group(1), ""), w) for w in command]
    if words[0] == "edgemeta":
        args = words[1:]
    elif "-m" in words and words.index("-m") + 1 < len(words) and words[words.index("-m") + 1] == "edgemeta":
        args = words[words.index("-m") + 2 :]
    else:
        return None
    expanded: list[str] = []
    for a in args:
        matches = sorted(glob.glob(a, root_dir=cwd)) if any(ch in a for ch in "*?[") else []
        expanded.extend(matches or [a])
    return expanded


def resolve(args: list[str]) -> click.Context:
    """Parse ``edgemeta ARGS`` as the CLI would, without running it: unknown commands and options,
    missing arguments and bad values raise click.UsageError. Paths need not exist here."""
    group = main.make_context("edgemeta", args[:1])
    name, command, rest = main.resolve_command(group, args)
    assert command is not None
    return command.make_context(name, rest, parent=group)


@pytest.fixture
def paths_need_not_exist(monkeypatch):
    """click.Path(exists=True) accepts a missing path: the README names files of the reader's own."""
    real = click.Path.convert

    def convert(self, value, param, ctx):
        exists, self.exists = self.exists, False
        try:
            return real(self, value, param, ctx)
        finally:
            self.exists = exists

    monkeypatch.setattr(click.Path, "convert", convert)


def missing_input(name: str, params: dict) -> str | None:
    """The first file the command reads that is not there (so it is parsed only), or None."""
    reads = [params.get("model_path"), params.get("path")]
    if name != "enroll":
        reads.append(params.get("store_path"))
    return next((str(p) for p in reads if p is not None and not Path(p).exists()), None)


def setup_run_folder(tmp: Path) -> None:
    """What the README's commands refer to: ``models/`` (the shipped files) and ``my_symbols/``
    (one sub-folder of drawings per class)."""
    (tmp / "models").symlink_to(ROOT / "models", target_is_directory=True)
    for kind in ("alpha", "beta"):
        (tmp / "my_symbols" / kind).mkdir(parents=True)
        for seed in range(3):
            Image.fromarray(drawing(kind, 100 + seed)).save(tmp / "my_symbols" / kind / f"{seed}.png")


def test_bash_examples_parse_and_the_fast_ones_run(tmp_path, monkeypatch, paths_need_not_exist):
    setup_run_folder(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # edgemeta demo's contact sheet lands here
    ran: dict[str, str] = {}
    parsed = 0
    for heading, body in blocks("bash"):
        variables: dict[str, str] = {}
        for command in commands(body):
            if all(re.fullmatch(r"\w+=\S*", w) for w in command):
                variables.update(w.split("=", 1) for w in command)
                continue
            args = edgemeta_args(command, variables, tmp_path)
            if args is None:
                continue
            where = f"README section {heading!r}: edgemeta {shlex.join(args)}"
            try:
                ctx = resolve(args)
            except click.UsageError as e:
                pytest.fail(f"{where}: {e.format_message()}")
            parsed += 1
            if ctx.info_name not in RUNNABLE or missing_input(ctx.info_name, ctx.params):
                continue
            result = CliRunner().invoke(main, args)
            assert result.exit_code == 0, f"{where}: exit {result.exit_code}\n{result.output}{result.exception!r}"
            ran[shlex.join(args)] = result.output
    mentioned = sum(len(re.findall(r"(?:^|&&|-m)\s*edgemeta\s", body, flags=re.M)) for _, body in blocks("bash"))
    assert parsed == mentioned, "every edgemeta command line of the README is parsed"
    assert {a.split()[0] for a in ran} >= {"demo", "enroll", "classify", "info", "bake"}, sorted(ran)
    info = next(out for a, out in ran.items() if a.startswith("info digits.npz"))
    assert all(label in info for label in ("zero", "alpha", "beta")), info
    assert (tmp_path / "classifier.onnx").is_file() and (tmp_path / "edgemeta-demo.png").is_file()


@pytest.mark.parametrize(
    "args",
    [
        ["classify", "--topk", "3", "x.png"],
        ["enrol", "--store", "s.npz", "a", "x.png"],
        ["eval", "--reject", "lenient"],
    ],
)
def test_a_renamed_option_or_command_fails_the_parse(args, paths_need_not_exist):
    with pytest.raises(click.UsageError):
        resolve(args)


def test_ci_runs_the_readme_test_command_and_fails_when_it_fails(tmp_path):
    quickstart = dict(blocks("bash"))[
        "Quickstart (a fresh machine with Python 3.10+; the tests also need Node 18+ with npm)"
    ]
    command = quickstart.strip().splitlines()[1]
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert command in ci
    # set -e ignores a failing command inside an && list: CI must check the list's status itself.
    guarded = next(line for line in ci.splitlines() if command in line)
    assert guarded.startswith("if ! {") and guarded.endswith("; then")
    # The guard as CI writes it stops the script when any step of the list fails.
    script = tmp_path / "guard.sh"
    script.write_text(
        "set -euo pipefail\n" + guarded.replace(command, "true && false && true") + "\n  exit 7\nfi\necho ran on\n"
    )
    proc = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert proc.returncode == 7 and "ran on" not in proc.stdout
