"""The training loop and ``edgemeta train`` on a tiny learnable synthetic data set."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import needs_torch, write_toy_mnist

from edgemeta.cli import main

pytestmark = needs_torch


@pytest.fixture
def toy(tmp_path):
    return write_toy_mnist(tmp_path)


def _cfg(toy, out, **kw):
    from edgemeta.train.loop import TrainConfig

    base = dict(
        data=str(toy),
        out=str(out),
        way=4,
        shot=[1, 2],
        query=3,
        episodes=24,
        size=16,
        val_every=12,
        val_episodes=20,
        test_way=2,
        test_shot=1,
        test_query=3,
        log_every=2,
        augment="full",
        seed=3,
        lr_step=6,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_loss_falls_and_outputs(toy, tmp_path):
    from edgemeta.train.loop import train

    summary = train(_cfg(toy, tmp_path / "run", episodes=40, augment="none"), progress=False)
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:2]), losses
    assert summary["episodes"] == 40 and summary["best_val"]["accuracy"] > 0.5
    for name in ("best.pt", "last.pt", "config.json", "metrics.jsonl", "summary.json"):
        assert (tmp_path / "run" / name).is_file()


def test_checkpoint_round_trip_and_exact_resume(toy, tmp_path):
    import torch

    from edgemeta.train.checkpoint import CheckpointError, build_model_from_checkpoint, read_checkpoint
    from edgemeta.train.loop import train

    train(_cfg(toy, tmp_path / "straight"), progress=False)
    train(_cfg(toy, tmp_path / "resumed", episodes=12), progress=False)
    train(_cfg(toy, tmp_path / "resumed", episodes=24), resume=True, progress=False)
    a, b = read_checkpoint(tmp_path / "straight" / "last.pt"), read_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["episode"] == b["episode"] == 24
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    ckpt = torch.load(tmp_path / "straight" / "best.pt", weights_only=True)
    assert ckpt["format"] == "edgemeta-checkpoint" and ckpt["version"] == 1
    cfg = ckpt["config"]
    assert cfg["backbone"] == "conv4" and cfg["embedding_dim"] == 64 and cfg["metric"] == "sqeuclidean"
    assert set(ckpt["best_val"]) == {"accuracy", "ci95", "episode"}
    model = build_model_from_checkpoint(ckpt)
    assert not model.training and model(torch.zeros(2, 1, 16, 16)).shape == (2, 64)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        read_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize(
    "args,message",
    [
        (["--data", "/nonexistent/data"], "not found"),
        (["--split", "lake"], "unknown split"),
        (["--way", "50"], "--way 50"),
        (["--way", "3", "--shot", "10", "--query", "5"], "--shot + --query"),
    ],
)
def test_cli_errors(toy, tmp_path, args, message):
    base = {"--data": str(toy), "--out": str(tmp_path / "run"), "--size": "16", "--episodes": "4"}
    for k, v in zip(args[::2], args[1::2]):
        base[k] = v
    argv = ["train", "--no-progress"] + [x for kv in base.items() for x in kv]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_trains(toy, tmp_path):
    argv = [
        "train",
        "--data",
        str(toy),
        "--out",
        str(tmp_path / "run"),
        "--size",
        "16",
        "--episodes",
        "6",
        "--way",
        "3",
        "--shot",
        "1",
        "--query",
        "2",
        "--val-every",
        "6",
        "--val-episodes",
        "10",
        "--test-way",
        "2",
        "--no-progress",
        "--json",
    ]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["episodes"] == 6


def test_cli_resume_keeps_the_runs_own_data_and_episode_count(toy, tmp_path):
    import torch

    from edgemeta.train.checkpoint import read_checkpoint

    run = tmp_path / "run"
    argv = [
        "train",
        "--data",
        str(toy),
        "--out",
        str(run),
        "--size",
        "16",
        "--episodes",
        "6",
        "--way",
        "3",
        "--shot",
        "1",
        "--query",
        "2",
        "--val-every",
        "3",
        "--val-episodes",
        "10",
        "--test-way",
        "2",
        "--no-progress",
        "--json",
    ]
    assert CliRunner().invoke(main, argv).exit_code == 0
    ckpt = read_checkpoint(run / "last.pt")
    ckpt["episode"], ckpt["step"] = 3, 3  # as if killed halfway
    torch.save(ckpt, run / "last.pt")
    rows = "".join(json.dumps({"episode": e, "loss": 1.0, "train_acc": 0.5}) + "\n" for e in range(1, 6))
    (run / "metrics.jsonl").write_text(rows + '{"episode": 6, "lo')  # killed mid-write
    result = CliRunner().invoke(main, ["train", "--out", str(run), "--resume", "--no-progress", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["episodes"] == 6  # not the 40000 default
    # Rows after the checkpoint were redone, not repeated: the curves never fold back.
    episodes = [json.loads(line)["episode"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert episodes == [1, 2, 3, 6], episodes
    result = CliRunner().invoke(
        main, ["train", "--out", str(run), "--resume", "--episodes", "9", "--no-progress", "--json"]
    )
    assert result.exit_code == 0 and json.loads(result.output.strip().splitlines()[-1])["episodes"] == 9
    for argv, code, message in (
        (["train", "--out", str(tmp_path / "none"), "--resume"], 1, "to continue; give --data"),
        (["train", "--out", str(tmp_path / "none")], 2, "Missing option '--data'"),
    ):
        result = CliRunner().invoke(main, argv)
        assert result.exit_code == code and message in result.output and "Traceback" not in result.output


def test_init_warm_starts_from_another_run(toy, tmp_path):
    import torch

    from edgemeta.train.checkpoint import CheckpointError, read_checkpoint
    from edgemeta.train.loop import train

    train(_cfg(toy, tmp_path / "first", episodes=12), progress=False)
    first = read_checkpoint(tmp_path / "first")["model"]
    # One episode at a tiny learning rate: the second run must start from the first one's weights.
    train(_cfg(toy, tmp_path / "second", episodes=1, lr=1e-9, init=str(tmp_path / "first")), progress=False)
    second = read_checkpoint(tmp_path / "second" / "last.pt")
    assert second["episode"] == 1  # the count, schedule and optimizer start afresh
    for name, value in first.items():
        if value.dtype.is_floating_point and "running" not in name:  # BN statistics move in train mode
            assert torch.allclose(value, second["model"][name], atol=1e-6), name
    # A higher input size keeps the weights (fine-tuning at a new resolution); another backbone does not.
    train(_cfg(toy, tmp_path / "bigger", episodes=1, lr=1e-9, size=20, init=str(tmp_path / "first")), progress=False)
    bigger = read_checkpoint(tmp_path / "bigger" / "last.pt")
    assert bigger["config"]["size"] == 20
    assert torch.allclose(first["encoder.0.0.weight"], bigger["model"]["encoder.0.0.weight"], atol=1e-6)
    with pytest.raises(CheckpointError, match="its backbone is 'conv4', this run's is 'resnet12'"):
        train(_cfg(toy, tmp_path / "third", backbone="resnet12", init=str(tmp_path / "first")), progress=False)
    result = CliRunner().invoke(
        main, ["train", "--data", str(toy), "--out", str(tmp_path / "x"), "--init", str(tmp_path / "missing")]
    )
    assert result.exit_code != 0 and "does not exist" in result.output
