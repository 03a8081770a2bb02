"""Writing model files: fail early when the output cannot be written, rename only verified files."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from .checkpoint import ExportError


def check_writable(out: Path) -> None:
    """Fail early (before minutes of work) when ``out`` cannot be written."""
    if out.is_dir():
        raise ExportError(f"output path is a folder: {out}")
    if not out.parent.is_dir():
        raise ExportError(f"cannot write {out}: folder {out.parent} does not exist")
    try:
        fd, probe = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".probe")
    except OSError as e:
        raise ExportError(f"cannot write to {out.parent}: {e.strerror}") from None
    os.close(fd)
    os.unlink(probe)


def atomic_write(out: Path, data: bytes, check: Callable[[Path], None]) -> None:
    """Write ``data`` to a temporary file beside ``out``, run ``check`` on it, then rename it to ``out``.

    When anything fails no file is left behind (and an older ``out`` is untouched).
    """
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            if hasattr(os, "fchmod"):  # mkstemp makes 0600; a model file is meant to be shared
                os.fchmod(f.fileno(), 0o644)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        check(Path(tmp))
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
