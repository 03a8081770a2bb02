"""The typed run state of the training loop: what ``last.pt`` holds of it, and its bookkeeping rules.
(That a resumed run continues bit for bit is tests/test_train_interrupt.py's job.)"""

from __future__ import annotations

import math

import pytest
from conftest import needs_torch

pytestmark = needs_torch

# The run-state keys of a last.pt as the loop wrote them before the state was typed: files written
# then must resume, and files written now must read the same.
SAVED = {
    "episode": 24,
    "step": 17,
    "best_val": {"accuracy": 0.5, "ci95": 0.1, "episode": 12},
    "bad_vals": 1,
    "elapsed": 3.5,
    "time_to_target": {"seconds": 2.0, "episode": 12},
    "log_window": {"sums": [1.25, 0.75], "steps": 3},
}


def test_checkpoint_round_trip_keeps_every_key():
    import torch

    from edgemeta.train.run_state import RunState

    state = RunState.from_checkpoint({"model": {}, **SAVED}, torch.device("cpu"))
    assert state.log_sums.dtype == torch.float32 and state.log_steps == 3
    assert state.seconds() >= 3.5  # the clock continues from the saved time
    assert state.to_checkpoint() == SAVED
    fresh = RunState.from_checkpoint(None, torch.device("cpu")).to_checkpoint()
    assert "time_to_target" not in fresh  # written only once a target was reached, as before
    assert fresh == {
        "episode": 0,
        "step": 0,
        "best_val": {"accuracy": -1.0, "ci95": 0.0, "episode": 0},
        "bad_vals": 0,
        "elapsed": 0.0,
        "log_window": {"sums": [0.0, 0.0], "steps": 0},
    }


def test_older_checkpoint_without_log_window_starts_an_empty_one():
    import torch

    from edgemeta.train.run_state import RunState

    old = {k: v for k, v in SAVED.items() if k not in ("log_window", "time_to_target")}
    state = RunState.from_checkpoint(old, torch.device("cpu"))
    assert state.log_sums.tolist() == [0.0, 0.0] and state.log_steps == 0 and state.time_to_target is None


@pytest.mark.parametrize("target, patience", [(0.0, 2), (0.6, 0)])
def test_validation_bookkeeping(target, patience):
    import torch

    from edgemeta.train.run_state import RunState

    state = RunState.from_checkpoint(None, torch.device("cpu"))
    state.episode, state.elapsed = 10, 1.0
    assert state.record_validation(0.5, 0.1, target) and state.bad_vals == 0
    assert state.best_val == {"accuracy": 0.5, "ci95": 0.1, "episode": 10} and not state.should_stop(target, patience)
    state.episode, state.elapsed = 20, 2.0
    assert not state.record_validation(0.4, 0.1, target) and state.bad_vals == 1
    assert state.best_val["episode"] == 10 and not state.should_stop(target, patience)
    state.episode, state.elapsed = 30, 3.0
    improved = state.record_validation(0.7 if target else 0.45, 0.1, target)
    assert improved == bool(target) and state.should_stop(target, patience)
    assert state.time_to_target == ({"seconds": 3.0, "episode": 30} if target else None)
    state.record_no_validation()
    assert math.isnan(state.best_val["accuracy"]) and state.bad_vals == 0
