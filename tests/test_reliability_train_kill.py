"""A training run killed with SIGKILL keeps loadable checkpoints and resumes from the last one."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import needs_torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stress"))
import kill_train  # noqa: E402

pytestmark = needs_torch


def test_killed_training_resumes_from_last_good_checkpoint(tmp_path):
    result = kill_train.run_trials(trials=3, work=tmp_path, seed=1, episodes=120)
    assert result["final_episode"] >= 120
    assert result["episodes_at_kills"][-1] > result["episodes_at_kills"][0]
    assert len(result["episodes_at_kills"]) == 3


def test_sigint_and_sigterm_save_the_current_episode_and_resume_exactly(tmp_path):
    """A real ``edgemeta train`` process, SIGINT then (resumed) SIGTERM at random moments: exits
    130 and 143, last.pt at the episode each names, and the resumed run ends equal to an
    uninterrupted one (run_signal_trials raises otherwise)."""
    result = kill_train.run_signal_trials(trials=2, work=tmp_path, seed=1)
    assert result["signals"] == ["SIGINT", "SIGTERM"]
    assert 1 <= result["episodes_at_signals"][0] <= result["episodes_at_signals"][1]
