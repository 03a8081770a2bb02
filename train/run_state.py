"""Where a training run stands: what the loop advances step by step and ``last.pt`` saves.

With the weights, optimizer and random states (``resume.py``) this is everything a resumed run
continues from, so that it goes on exactly as if it had never stopped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch


def _no_validation_yet() -> dict[str, float]:
    return {"accuracy": -1.0, "ci95": 0.0, "episode": 0}


@dataclass
class RunState:
    """The run's counters, best validation, log window and clock.

    episode: episodes trained so far, all ranks together; step: optimizer steps so far.
    best_val: the best validation, ``{"accuracy", "ci95", "episode"}`` (accuracy -1 before the first).
    bad_vals: validations since the best one (early stopping counts them).
    elapsed: seconds of training when the state was last saved or validated.
    time_to_target: ``{"seconds", "episode"}`` of the first validation that reached the target; None before.
    log_sums: float32 [2] on the device: training loss and accuracy summed over the ``log_steps``
        steps since the last log row (saved as well: a resumed run's first row averages the same steps).
    started: ``time.perf_counter()`` at which training would have begun had it never stopped.
    stop: validation asked to stop (early stopping, target reached) or the time limit passed.
    """

    episode: int = 0
    step: int = 0
    best_val: dict[str, float] = field(default_factory=_no_validation_yet)
    bad_vals: int = 0
    elapsed: float = 0.0
    time_to_target: dict[str, float] | None = None
    log_sums: torch.Tensor = field(default_factory=lambda: torch.zeros(2))
    log_steps: int = 0
    started: float = 0.0
    stop: bool = False

    @classmethod
    def from_checkpoint(cls, ckpt: dict[str, Any] | None, device: torch.device) -> RunState:
        """The state saved in ``ckpt`` (a fresh one for None), its clock running from now."""
        ckpt = ckpt or {}
        window = ckpt.get("log_window", {"sums": [0.0, 0.0], "steps": 0})  # older checkpoints lack it
        state = cls(
            episode=ckpt.get("episode", 0),
            step=ckpt.get("step", 0),
            best_val=ckpt.get("best_val", _no_validation_yet()),
            bad_vals=ckpt.get("bad_vals", 0),
            elapsed=ckpt.get("elapsed", 0.0),
            time_to_target=ckpt.get("time_to_target"),
            log_sums=torch.tensor(window["sums"], dtype=torch.float32, device=device),
            log_steps=window["steps"],
        )
        state.started = time.perf_counter() - state.elapsed
        return state

    def to_checkpoint(self) -> dict[str, Any]:
        """The keys ``last.pt`` and ``best.pt`` hold for this state (``from_checkpoint`` reads them)."""
        saved: dict[str, Any] = {
            "episode": self.episode,
            "step": self.step,
            "best_val": self.best_val,
            "bad_vals": self.bad_vals,
            "elapsed": self.elapsed,
        }
        if self.time_to_target is not None:
            saved["time_to_target"] = self.time_to_target
        saved["log_window"] = {"sums": self.log_sums.tolist(), "steps": self.log_steps}
        return saved

    def seconds(self) -> float:
        """Seconds of training, earlier runs of a resumed run included."""
        return time.perf_counter() - self.started

    def record_validation(self, accuracy: float, ci95: float, target: float) -> bool:
        """Note a validation result (``target`` 0: none); True when it beat the best so far."""
        improved = accuracy > self.best_val["accuracy"]
        if target > 0 and accuracy >= target and self.time_to_target is None:
            self.time_to_target = {"seconds": self.elapsed, "episode": self.episode}
        if improved:
            self.best_val = {"accuracy": accuracy, "ci95": ci95, "episode": self.episode}
        self.bad_vals = 0 if improved else self.bad_vals + 1
        return improved

    def record_no_validation(self) -> None:
        """A validation point of a run without held-out classes: every one counts as the best."""
        self.best_val = {"accuracy": float("nan"), "ci95": float("nan"), "episode": self.episode}
        self.bad_vals = 0

    def should_stop(self, target: float, patience: int) -> bool:
        """The target accuracy reached (``target`` 0: none), or ``patience`` validations (0: never)
        passed without improvement."""
        reached = target > 0 and self.best_val["accuracy"] >= target
        return reached or (patience > 0 and self.bad_vals >= patience)
