"""Progress bar and metrics rows of a training run."""

from __future__ import annotations

import json
import sys
from typing import Any


def log_row(stream: Any, **row: Any) -> None:
    """One JSON line of metrics, flushed (a killed run keeps what it logged)."""
    stream.write(json.dumps(row) + "\n")
    stream.flush()


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    """tqdm on stderr, or a silent stand-in (disabled, or tqdm missing)."""
    try:
        from tqdm import tqdm
    except ImportError:  # a bar is a nicety; training must not depend on it
        enabled = False
    if not enabled:
        return _NoBar()
    return tqdm(total=total, initial=initial, unit="ep", file=sys.stderr, dynamic_ncols=True)


class _NoBar:
    def update(self, n: int) -> None: ...
    def set_postfix(self, **kw) -> None: ...
    def write(self, s: str, file=None) -> None:
        print(s, file=sys.stderr)

    def close(self) -> None: ...
