"""The cross-process write lock of a store file, so that concurrent read-modify-writes lose nothing.

The lock is a sidecar file ``.NAME.lock`` beside the store ``NAME``, locked with ``fcntl.flock``
(POSIX) or ``msvcrt.locking`` (Windows): the operating system's own primitives, so the core
install needs no ``filelock`` package (whose POSIX lock is this same ``flock`` call). The kernel
drops the lock when its holder's file is closed, also when the process is killed, so a crashed
writer never leaves a stale lock behind.

The lock file is never deleted. Deleting it would race: a writer that opened the old file
before the unlink and one that creates a new file after it would both "hold" the lock, on two
different files. An empty lock file beside each store is the price of that.

``flock`` on network file systems (NFS, SMB) may be emulated or not shared between machines:
the guarantee holds between processes of one machine on a local file system.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import EdgemetaError, StoreError
from .store import StoreContents, check_writable, read_store, write_error, write_store

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]
    import msvcrt

DEFAULT_LOCK_TIMEOUT = 60.0
_MAX_POLL = 0.05  # seconds between tries at most: a store write takes a few milliseconds


def lock_path(store: str | os.PathLike) -> Path:
    """The lock file of a store: ``.NAME.lock`` in the store's folder."""
    p = Path(store)
    return p.parent / f".{p.name}.lock"


@contextmanager
def store_lock(store: str | os.PathLike, timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the write lock of ``store`` for the ``with`` block; every writer that takes it is
    serialized against the others (readers need no lock: stores are replaced by atomic rename).

    Waits at most ``timeout`` seconds (0: one try), then raises a ``StoreError`` naming the
    store. Refuses, before waiting, a store that cannot be written (see ``check_writable``).
    """
    if not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout < 0:
        raise EdgemetaError(f"the lock timeout must be 0 or more seconds, got {timeout!r}")
    target = Path(store)
    check_writable(target)
    fd = _open(target)
    try:
        _acquire(fd, target, float(timeout))
        try:
            yield
        finally:
            _release(fd)
    finally:
        os.close(fd)


def remove_classes(
    store: str | os.PathLike, labels: Iterable[str], timeout: float = DEFAULT_LOCK_TIMEOUT
) -> StoreContents:
    """Remove classes from a store file under its write lock; returns what the store holds now.

    Needs no model: the file holds each class's sums and counts. A label that is not in the
    store is a ``StoreError`` and the file is left as it was.
    """
    target = Path(store)
    if not target.is_file():  # before the lock: no lock file beside a store that is not there
        raise StoreError(f"store not found: {target}")
    wanted = list(dict.fromkeys(labels))
    with store_lock(target, timeout):
        old = read_store(target)
        missing = [x for x in wanted if x not in old.labels]
        if missing:
            raise StoreError(f"store {target} has no class named {', '.join(map(repr, missing))}")
        drop = set(wanted)
        keep = [i for i, x in enumerate(old.labels) if x not in drop]
        new = StoreContents(
            [old.labels[i] for i in keep],
            old.sums[keep],
            old.counts[keep],
            old.model_fingerprint,
            old.metric,
            old.network_id,
        )
        write_store(target, new)
    return new


def _open(target: Path) -> int:
    lock = lock_path(target)
    try:
        return os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        if fcntl is None or not lock.is_file():
            raise write_error(target, PermissionError(13, "permission denied", str(lock))) from None
        # Another user's lock file: flock works on a read-only descriptor too.
        return os.open(lock, os.O_RDONLY)
    except OSError as e:
        raise write_error(target, e) from None


def _acquire(fd: int, target: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pause = 0.001
    while not _try_lock(fd, target):
        left = deadline - time.monotonic()
        if left <= 0:
            raise StoreError(
                f"timed out after {timeout:g} s waiting for the write lock of store {target} "
                "(another process is writing it)"
            )
        time.sleep(min(pause, left))
        pause = min(2 * pause, _MAX_POLL)


def _try_lock(fd: int, target: Path) -> bool:
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except (BlockingIOError, PermissionError):
        return False
    except OSError as e:
        if fcntl is None:  # msvcrt reports a held lock as a plain OSError (EDEADLOCK)
            return False
        raise StoreError(f"cannot lock store {target}: {e.strerror or e} ({lock_path(target)})") from None
    return True


def _release(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
