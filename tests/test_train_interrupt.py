"""Training loses at most a minute: SIGINT/SIGTERM save ``last.pt`` at the current episode,
``last.pt`` is saved on a timer, and a run resumed from either ends bit for bit where an
uninterrupted run ends; ``--out`` holding a run is refused without ``--resume``/``--overwrite``.

The signals are real (``os.kill`` of this process from inside a chosen step); the subprocess
version with ``edgemeta train`` is ``stress/kill_train.py`` (tests/test_reliability_train_kill.py).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import needs_torch, write_toy_mnist

from edgemeta.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stress"))
from kill_train import metrics_rows  # noqa: E402
from test_train_loop import _cfg as train_loop_cfg  # noqa: E402

pytestmark = needs_torch


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toy_mnist(tmp_path_factory.mktemp("toy"))


def _cfg(toy, out, **kw):
    # log_every 5 and val_every 12: interrupts land inside a log window and away from validations.
    return train_loop_cfg(toy, out, **{"log_every": 5, **kw})


@pytest.fixture(scope="module")
def straight(toy, tmp_path_factory):
    from edgemeta.train.loop import train

    out = tmp_path_factory.mktemp("straight") / "run"
    train(_cfg(toy, out), progress=False, checkpoint_minutes=0)
    return out


def _at_step(monkeypatch, steps: dict[int, object]) -> None:
    """Run ``steps[n]()`` inside optimizer step n (1-based), between backward and the update."""
    import edgemeta.train.loop as loop

    real, count = loop.set_learning_rate, [0]

    def hooked(optimizer, lr):
        count[0] += 1
        if count[0] in steps:
            steps[count[0]]()
        real(optimizer, lr)

    monkeypatch.setattr(loop, "set_learning_rate", hooked)


def _assert_same_run(a, b) -> None:
    import torch

    from edgemeta.train.checkpoint import read_checkpoint

    x, y = read_checkpoint(a / "last.pt"), read_checkpoint(b / "last.pt")
    assert x["episode"] == y["episode"] and x["best_val"] == y["best_val"]
    for k in x["model"]:
        assert torch.equal(x["model"][k], y["model"][k]), k
    for p, q in zip(x["optimizer"]["state"].values(), y["optimizer"]["state"].values()):
        assert all(torch.equal(p[k], q[k]) for k in p)
    assert metrics_rows(a) == metrics_rows(b)  # no row twice, none out of order, the same values


def test_signals_save_the_current_episode_and_resume_exactly(toy, straight, tmp_path, monkeypatch):
    from edgemeta.runtime.errors import Interrupted
    from edgemeta.train.checkpoint import read_checkpoint
    from edgemeta.train.loop import train

    out, handlers = tmp_path / "run", (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    _at_step(monkeypatch, {7: lambda: os.kill(os.getpid(), signal.SIGINT)})
    with pytest.raises(Interrupted) as caught:
        train(_cfg(toy, out), progress=False, checkpoint_minutes=0)
    assert caught.value.exit_code == 130 and caught.value.episode == 7
    assert f"saved {out / 'last.pt'}" in str(caught.value) and "--resume" in str(caught.value)
    assert read_checkpoint(out / "last.pt")["episode"] == 7  # no validation before 12: the signal's save

    # SIGTERM at step 17 (10 into the resumed run), and a second signal while last.pt is written.
    import edgemeta.train.loop as loop

    monkeypatch.undo()

    real_save = loop.save_checkpoint

    def save_under_fire(path, state):
        os.kill(os.getpid(), signal.SIGINT)
        real_save(path, state)

    _at_step(
        monkeypatch,
        {
            10: lambda: (
                os.kill(os.getpid(), signal.SIGTERM),
                monkeypatch.setattr(loop, "save_checkpoint", save_under_fire),
            )
        },
    )
    with pytest.raises(Interrupted) as caught:
        train(_cfg(toy, out), resume=True, progress=False, checkpoint_minutes=0)
    assert caught.value.exit_code == 143 and read_checkpoint(out / "last.pt")["episode"] == 17
    assert not list(out.glob(".*.tmp"))
    monkeypatch.undo()
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers  # put back
    train(_cfg(toy, out), resume=True, progress=False, checkpoint_minutes=0)
    _assert_same_run(out, straight)


def test_timed_save_survives_a_crash_and_resumes_exactly(toy, straight, tmp_path, monkeypatch):
    """A crash (no save of its own) right after step 10's log row: the timed save after step 9 is
    resumed from, and the row logged after it is dropped and redone."""
    import edgemeta.train.loop as loop
    from edgemeta.train.checkpoint import read_checkpoint

    out = tmp_path / "run"
    real_log, crash_after = loop.log_row, {"episode": 10}

    def log_then_crash(stream, **row):
        real_log(stream, **row)
        if row.get("episode") == crash_after["episode"]:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(loop, "log_row", log_then_crash)
    minutes = 1e-9  # every step is older than this: a timed save after each step
    with pytest.raises(RuntimeError, match="simulated crash"):
        loop.train(_cfg(toy, out), progress=False, checkpoint_minutes=minutes)
    assert read_checkpoint(out / "last.pt")["episode"] == 9
    assert metrics_rows(out)[-1]["episode"] == 10
    monkeypatch.undo()
    loop.train(_cfg(toy, out), resume=True, progress=False, checkpoint_minutes=minutes)
    _assert_same_run(out, straight)

    # 0 turns the timer off: a crash before the first validation leaves no last.pt.
    monkeypatch.setattr(loop, "log_row", log_then_crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        loop.train(_cfg(toy, tmp_path / "untimed"), progress=False, checkpoint_minutes=0)
    assert not (tmp_path / "untimed" / "last.pt").exists()


def _cli(toy, out, *extra):
    argv = [
        "train",
        "--data",
        str(toy),
        "--out",
        str(out),
        "--size",
        "16",
        "--episodes",
        "4",
        "--way",
        "3",
        "--shot",
        "1",
        "--query",
        "2",
        "--val-every",
        "4",
        "--val-episodes",
        "4",
        "--test-way",
        "2",
        "--no-progress",
        "--json",
        *extra,
    ]
    return CliRunner().invoke(main, argv)


def test_out_holding_a_run_is_refused_unless_resume_or_overwrite(toy, tmp_path):
    from edgemeta.train.checkpoint import read_checkpoint

    run = tmp_path / "run"
    run.mkdir()
    old = {"metrics.jsonl": '{"episode": 900, "loss": 0.1}\n', "best.pt": "a 42.5% model", "config.json": "{}"}
    for name, text in old.items():
        (run / name).write_text(text)
    result = _cli(toy, run)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert result.output.strip().splitlines() == [
        (
            f"Error: --out {run} already holds a run (config.json, best.pt, metrics.jsonl); add --resume to continue "
            "it or --overwrite to replace it"
        )
    ]
    assert {name: (run / name).read_text() for name in old} == old  # untouched

    result = _cli(toy, run, "--overwrite")
    assert result.exit_code == 0, result.output
    assert [r["episode"] for r in metrics_rows(run)] == [4]  # the new run's row only: nothing appended
    assert read_checkpoint(run / "best.pt")["episode"] == 4

    result = _cli(toy, run, "--overwrite", "--resume")
    assert result.exit_code == 1 and "Error: --resume and --overwrite exclude each other" in result.output
