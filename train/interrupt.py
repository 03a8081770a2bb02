"""Losing at most a minute of training: SIGINT/SIGTERM save ``last.pt`` and stop, and
``last.pt`` is also saved every few minutes regardless of validation.

A signal only sets a flag; the loop finishes its current optimizer step (and validation, if
the step has one), then saves a consistent ``last.pt`` and raises :class:`Interrupted`. Further
signals while that happens are ignored, so a second Ctrl-C cannot tear a save (the write is
atomic anyway, see ``checkpoint.py``); SIGKILL remains the hard stop. Under torchrun every
rank receives the signal (torchrun forwards its own), possibly at different steps: after
every step the ranks agree on the largest signal number seen (one scalar all-reduce), so they
all stop after the same step, rank 0 alone writes, and all of them raise.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from edgemeta.runtime.errors import Interrupted

from . import distributed
from .distributed import DistInfo

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class RunGuard:
    """Signal handlers (while the run is inside ``with``) and the timed save of ``last.pt``.

    minutes: save ``last.pt`` when this many minutes passed since its last save (0: never).
    Handlers are installed only in the main thread (Python allows no other); elsewhere a
    signal keeps its usual effect.
    """

    def __init__(self, minutes: float, info: DistInfo) -> None:
        self.minutes, self.info = minutes, info
        self.signum = 0
        self.last_save = time.monotonic()
        self._previous: dict[int, Any] = {}
        self._closers: list[Callable[[], Any]] = []

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for close in self._closers:  # e.g. the progress bar, so that the last line starts a line
            close()
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous, self._closers = {}, []

    def close_on_exit(self, *closers: Callable[[], Any]) -> None:
        """Call these (idempotent) closers when the run leaves the guard, however it leaves."""
        self._closers.extend(closers)

    def _handle(self, signum: int, frame: Any) -> None:
        self.signum = self.signum or signum  # the first one decides the exit code

    def saved(self) -> None:
        """``last.pt`` was just written (e.g. by validation): restart the timer."""
        self.last_save = time.monotonic()

    def after_step(self, episode: int, finished: bool, save_last: Callable[[], Path]) -> None:
        """Call after every optimizer step on every rank. A stop requested on any rank: rank 0
        saves ``last.pt``, all ranks raise ``Interrupted`` (unless the run is finished anyway:
        then it completes normally). Otherwise rank 0 saves when the timer is due."""
        signum = int(distributed.agree_max(float(self.signum), self.info))
        if signum and not finished:
            path = save_last() if self.info.is_main else Path()
            distributed.barrier(self.info)
            raise Interrupted(signum, path, episode)
        due = self.minutes > 0 and time.monotonic() - self.last_save >= 60.0 * self.minutes
        if due and self.info.is_main and not finished:
            save_last()
            self.saved()
