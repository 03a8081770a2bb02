"""Writing model files: fail early when the output cannot be written (the write itself, renaming only
verified files, is ``edgemeta.runtime.files.atomic_write`` with a check)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from edgemeta.runtime.errors import ExportError


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
