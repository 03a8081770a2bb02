"""The prototype store file: a versioned ``.npz`` that loads without pickle, written atomically.

Arrays: ``format_version`` int64 [], ``labels`` unicode [C], ``sums`` float64 [C, D],
``counts`` int64 [C], ``model_fingerprint`` unicode [], ``metric`` unicode [].
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import StoreError

STORE_FORMAT = 1
_KEYS = ("format_version", "labels", "sums", "counts", "model_fingerprint", "metric")
MAX_STORE_BYTES = 4 * 1024 * 1024 * 1024


@dataclass
class StoreContents:
    labels: list[str]
    sums: np.ndarray       # float64 [C, D]
    counts: np.ndarray     # int64 [C]
    model_fingerprint: str
    metric: str


def write_store(path: str | os.PathLike, contents: StoreContents) -> None:
    """Write atomically: temp file in the same folder, fsync, rename, fsync the folder."""
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise StoreError(f"cannot write store: folder does not exist: {folder}")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                format_version=np.int64(STORE_FORMAT),
                labels=np.asarray(contents.labels, dtype=np.str_).reshape(len(contents.labels)),
                sums=np.asarray(contents.sums, dtype=np.float64),
                counts=np.asarray(contents.counts, dtype=np.int64),
                model_fingerprint=np.str_(contents.model_fingerprint),
                metric=np.str_(contents.metric),
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
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


def read_store(path: str | os.PathLike) -> StoreContents:
    """Read and validate a store; every defect is a one-line ``StoreError``."""
    p = Path(path)
    if not p.is_file():
        raise StoreError(f"store not found: {p}")
    if p.stat().st_size > MAX_STORE_BYTES:
        raise StoreError(f"store file is too large: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            if "format_version" in z.files:
                _check_version(z["format_version"], p)
            if missing:
                raise StoreError(f"not an edgemeta store (missing {', '.join(missing)}): {p}")
            arrays = {k: z[k] for k in _KEYS}
    except StoreError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError, TypeError) as e:
        raise StoreError(f"store is corrupted or not an edgemeta store: {p} ({type(e).__name__})") from None
    return _validate(arrays, p)


def _check_version(arr: np.ndarray, p: Path) -> None:
    if arr.shape != () or not np.issubdtype(arr.dtype, np.integer):
        raise StoreError(f"store has an invalid format_version: {p}")
    if int(arr) > STORE_FORMAT:
        raise StoreError(f"store format {int(arr)} is newer than this edgemeta supports ({STORE_FORMAT}); upgrade edgemeta: {p}")
    if int(arr) < 1:
        raise StoreError(f"store has an invalid format_version {int(arr)}: {p}")


def _validate(a: dict[str, np.ndarray], p: Path) -> StoreContents:
    labels, sums, counts = a["labels"], a["sums"], a["counts"]
    ok = (
        labels.ndim == 1 and labels.dtype.kind == "U"
        and sums.ndim == 2 and sums.dtype == np.float64 and sums.shape[0] == labels.shape[0]
        and counts.ndim == 1 and np.issubdtype(counts.dtype, np.integer) and counts.shape[0] == labels.shape[0]
        and a["model_fingerprint"].dtype.kind == "U" and a["model_fingerprint"].shape == ()
        and a["metric"].dtype.kind == "U" and a["metric"].shape == ()
    )
    if not ok:
        raise StoreError(f"store is corrupted (inconsistent arrays): {p}")
    label_list = [str(x) for x in labels]
    if len(set(label_list)) != len(label_list) or any(not x for x in label_list):
        raise StoreError(f"store is corrupted (empty or repeated labels): {p}")
    if (counts < 1).any() or not np.all(np.isfinite(sums)):
        raise StoreError(f"store is corrupted (bad counts or non-finite sums): {p}")
    return StoreContents(label_list, sums, counts.astype(np.int64), str(a["model_fingerprint"]), str(a["metric"]))
