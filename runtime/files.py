"""Writing a file atomically: a temp file beside the target, fsync, rename, fsync the folder.

A reader sees the old file or the new one, never a torn one; a crash leaves at most a temp file
``.NAME.*.tmp`` beside the target. Every writer of the project (the prototype store, checkpoints,
exported and rewritten model files, the training log) writes through ``atomic_write``.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows: temp files are not locked, and stale ones are left in place
    fcntl = None  # type: ignore[assignment]


def atomic_write(
    target: str | os.PathLike,
    data: bytes | Callable[[IO[bytes]], object],
    check: Callable[[Path], object] | None = None,
    *,
    mode: int = 0o644,
    locked: bool = False,
) -> None:
    """Write ``data`` (bytes, or a function that writes to the open binary file) to ``target``.

    ``check`` runs on the finished temp file before the rename; whatever it raises stops the write.
    ``mode``: the new file's permission bits (``tempfile.mkstemp`` would make it 0600).
    ``locked``: hold an exclusive ``flock`` on the temp file until it is renamed (where the OS has
    ``flock``), then remove the temps of earlier writers that were killed mid-write (nobody holds
    their lock): concurrent writers of one file tell each other's live temps from dead ones.
    On any failure the temp file is removed and the error re-raised; ``target`` is untouched.
    """
    target = Path(target)
    folder = folder_of(target)
    fd, tmp = _locked_temp(folder, target.name, mode) if locked else _temp(folder, target.name, mode)
    f = os.fdopen(fd, "wb")
    try:
        if isinstance(data, (bytes, bytearray, memoryview)):
            f.write(data)
        else:
            data(f)
        f.flush()
        os.fsync(f.fileno())
        if not (locked and fcntl is not None):
            f.close()  # check reads a finished file; Windows cannot rename an open one
        if check is not None:
            check(Path(tmp))
        os.replace(tmp, target)  # a locked temp is still open, so still locked, until renamed
    except BaseException:
        f.close()
        Path(tmp).unlink(missing_ok=True)
        raise
    f.close()
    fsync_dir(folder)
    if locked:
        remove_stale_temps(folder, target.name)


def folder_of(target: Path) -> Path:
    """The folder that holds ``target`` (``.`` for a bare file name)."""
    return target.parent if str(target.parent) else Path(".")


def temp_pattern(name: str) -> str:
    """Glob pattern of the temp files ``atomic_write`` makes for a target named ``name``."""
    return f".{glob.escape(name)}.*.tmp"


def _temp(folder: Path, name: str, mode: int) -> tuple[int, str]:
    import tempfile  # only writers need it (about 8 ms to import; classify never writes)

    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=folder)
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    return fd, tmp


def _locked_temp(folder: Path, name: str, mode: int) -> tuple[int, str]:
    """A new temp file beside the target with file mode ``mode``, open and exclusively locked."""
    while True:
        fd, tmp = _temp(folder, name, mode)
        if fcntl is None:
            return fd, tmp
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            # A cleaner may have removed the file between mkstemp and flock: start again.
            if os.stat(tmp).st_ino == os.fstat(fd).st_ino:
                return fd, tmp
        except FileNotFoundError:
            pass
        os.close(fd)


def remove_stale_temps(folder: Path, name: str) -> None:
    """Delete the temp files of target ``name`` whose writer is gone (nobody holds their lock)."""
    if fcntl is None:
        return
    for stale in folder.glob(temp_pattern(name)):
        try:
            fd = os.open(stale, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            stale.unlink(missing_ok=True)
        except OSError:
            pass  # locked: a live writer is still saving it
        finally:
            os.close(fd)


def fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); where a folder cannot be opened, skip."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
