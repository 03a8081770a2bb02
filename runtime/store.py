"""The prototype store file: a versioned ``.npz`` that loads without pickle, written atomically.

Arrays: ``format_version`` int64 [], ``labels`` unicode [C], ``sums`` float64 [C, D],
``counts`` int64 [C], ``model_fingerprint`` unicode [], ``metric`` unicode []; optional
``network_id`` unicode [] (the ``store_network_id`` of the model that made it; stores written
before it have none, and format 1 readers that predate it ignore it).
"""

from __future__ import annotations

import lzma
import math
import os
import stat
import tokenize
import unicodedata
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import EdgemetaError, StoreError
from .files import atomic_write, folder_of

STORE_FORMAT = 1
_KEYS = ("format_version", "labels", "sums", "counts", "model_fingerprint", "metric")
MAX_STORE_BYTES = 4 * 1024 * 1024 * 1024
MAX_LABEL_LENGTH = 256
MAX_COUNT = 2**53  # shots per class; far beyond any real use, and exact in float64
# Everything a damaged or hostile zip/npz can raise while being read.
_READ_ERRORS = (
    OSError,
    ValueError,
    zipfile.BadZipFile,
    EOFError,
    KeyError,
    TypeError,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,
    RuntimeError,
    MemoryError,
    tokenize.TokenError,
    SyntaxError,
)


def check_label(label: Any) -> str:
    """Labels are data (never used as a path): a non-empty string of up to 256 characters of valid
    Unicode text that prints on one line. Spaces and format characters (the joiners inside emoji,
    bidi marks) are fine; terminals and JSON get them escaped."""
    if not isinstance(label, str):
        raise EdgemetaError(f"a label must be a string, got {type(label).__name__}")
    if not label.strip():
        raise EdgemetaError("a label must not be empty")
    if len(label) > MAX_LABEL_LENGTH:
        raise EdgemetaError(f"a label must be at most {MAX_LABEL_LENGTH} characters")
    if "\x00" in label:  # the store's fixed-width strings drop trailing NULs: "a\x00" would become "a"
        raise EdgemetaError("a label must not contain NUL characters")
    for i, c in enumerate(label):
        why = _UNPRINTABLE.get(unicodedata.category(c))
        if why is not None:
            raise EdgemetaError(
                f"a label must be printable text on one line: character {i + 1} is U+{ord(c):04X} ({why})"
            )
    return label


def check_labels(labels: list[str]) -> None:
    """``check_label`` on each label, the first bad one raising; fast at a store's scale (100,000
    labels in a few ms): ``str.isprintable`` refuses every character of the categories refused
    here (and more), so when the joined labels pass it only blank and long labels remain."""
    try:
        printable = "".join(labels).isprintable()
    except TypeError:  # a label that is not a string: check_label says which
        printable = False
    if printable and max(map(len, labels), default=0) <= MAX_LABEL_LENGTH and all(map(str.strip, labels)):
        return
    for label in labels:
        check_label(label)


# Unicode categories a label may not hold. A lone surrogate is what a command-line byte that is not
# UTF-8 becomes: it cannot be encoded, so printing or baking the label would fail later.
_UNPRINTABLE = {
    "Cc": "a control character",
    "Zl": "a line break",
    "Zp": "a line break",
    "Cs": "a lone surrogate: was the label given in an encoding other than UTF-8?",
}


@dataclass
class StoreContents:
    labels: list[str]
    sums: np.ndarray  # float64 [C, D]
    counts: np.ndarray  # int64 [C]
    model_fingerprint: str
    metric: str
    network_id: str = ""  # "": the store loads only with the model whose fingerprint it holds


def write_store(path: str | os.PathLike, contents: StoreContents) -> None:
    """Write atomically: temp file in the same folder, fsync, rename, fsync the folder.

    The temp file stays locked (where the OS has ``flock``) until it is renamed, so a later
    save can tell the leftovers of a writer that was killed mid-save from a live writer's file
    and removes them.
    """
    target = Path(path)
    mode = check_writable(target)
    try:
        atomic_write(target, lambda f: _save_arrays(f, contents), mode=mode, locked=True)
    except OSError as e:
        raise write_error(target, e) from None


def _save_arrays(f: IO[bytes], contents: StoreContents) -> None:
    np.savez(
        f,
        format_version=np.int64(STORE_FORMAT),
        labels=np.asarray(contents.labels, dtype=np.str_).reshape(len(contents.labels)),
        sums=np.asarray(contents.sums, dtype=np.float64),
        counts=np.asarray(contents.counts, dtype=np.int64),
        model_fingerprint=np.str_(contents.model_fingerprint),
        metric=np.str_(contents.metric),
        network_id=np.str_(contents.network_id),
    )


def check_writable(path: str | os.PathLike) -> int:
    """Refuse a store that must not be replaced; returns the file mode its new file gets: the
    existing store's (the owner's choice is kept), else 0o644.

    A store without write permission is refused, and so is one with no write bit at all even
    for root (who may write anything): read-only is its owner's intent, and an atomic rename
    would otherwise replace the file without a word.
    """
    target = Path(path)
    folder = folder_of(target)
    if not folder.is_dir():
        raise StoreError(f"cannot write store {target}: folder {folder} does not exist")
    try:
        st = target.stat()
    except FileNotFoundError:
        return 0o644  # readable like any file open() makes, not mkstemp's 0600
    except OSError as e:
        raise write_error(target, e) from None
    if not stat.S_ISREG(st.st_mode):
        raise StoreError(f"cannot write store {target}: not a regular file")
    if not os.access(target, os.W_OK) or not st.st_mode & 0o222:
        raise StoreError(f"store is read-only: {target} (make the file writable to change it)")
    return stat.S_IMODE(st.st_mode)


def write_error(target: Path, e: OSError) -> StoreError:
    """A failed write as one line naming the store, not the temp or lock file beside it."""
    folder = folder_of(target)
    if not folder.is_dir():
        return StoreError(f"cannot write store {target}: folder {folder} does not exist")
    if isinstance(e, PermissionError):
        return StoreError(f"cannot write store {target}: no permission to write in folder {folder}")
    return StoreError(f"cannot write store {target}: {e.strerror or e}")


def read_store(path: str | os.PathLike) -> StoreContents:
    """Read and validate a store; every defect is a one-line ``StoreError``."""
    p = Path(path)
    if not p.is_file():
        raise StoreError(f"store not found: {p}")
    if p.stat().st_size > MAX_STORE_BYTES:
        raise StoreError(f"store file is too large: {p}")
    try:
        _check_members(p)
        with np.load(p, allow_pickle=False) as z:
            missing = [k for k in _KEYS if k not in z.files]
            if "format_version" in z.files:
                _check_version(z["format_version"], p)
            if missing:
                raise StoreError(f"not an edgemeta store (missing {', '.join(missing)}): {p}")
            arrays = {k: z[k] for k in _KEYS}
            arrays["network_id"] = z["network_id"] if "network_id" in z.files else np.str_("")
    except StoreError:
        raise
    except _READ_ERRORS as e:
        raise StoreError(f"store is corrupted or not an edgemeta store: {p} ({type(e).__name__})") from None
    return _validate(arrays, p)


def _check_members(p: Path) -> None:
    """Refuse, before any array is allocated, members that unpack or declare more than they hold."""
    with zipfile.ZipFile(p) as z:
        infos = z.infolist()
        if sum(i.file_size for i in infos) > MAX_STORE_BYTES:
            raise StoreError(f"store unpacks to more than {MAX_STORE_BYTES} bytes: {p}")
        for info in infos:
            if not info.filename.endswith(".npy"):
                continue
            with z.open(info) as f:
                version = np.lib.format.read_magic(f)
                header = (
                    np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = header(f)
            if math.prod(shape) * dtype.itemsize > info.file_size:
                raise StoreError(f"store is corrupted (array {info.filename} declares more data than it holds): {p}")


def _check_version(arr: np.ndarray, p: Path) -> None:
    if arr.shape != () or not np.issubdtype(arr.dtype, np.integer):
        raise StoreError(f"store has an invalid format_version: {p}")
    if int(arr) > STORE_FORMAT:
        raise StoreError(
            f"store format {int(arr)} is newer than this edgemeta supports ({STORE_FORMAT}); upgrade edgemeta: {p}"
        )
    if int(arr) < 1:
        raise StoreError(f"store has an invalid format_version {int(arr)}: {p}")


def _validate(a: dict[str, np.ndarray], p: Path) -> StoreContents:
    labels, sums, counts = a["labels"], a["sums"], a["counts"]
    ok = (
        labels.ndim == 1
        and labels.dtype.kind == "U"
        and sums.ndim == 2
        and sums.dtype == np.float64
        and sums.shape[0] == labels.shape[0]
        and counts.ndim == 1
        and np.issubdtype(counts.dtype, np.integer)
        and counts.shape[0] == labels.shape[0]
        and a["model_fingerprint"].dtype.kind == "U"
        and a["model_fingerprint"].shape == ()
        and a["metric"].dtype.kind == "U"
        and a["metric"].shape == ()
        and a["network_id"].dtype.kind == "U"
        and a["network_id"].shape == ()
    )
    if not ok:
        raise StoreError(f"store is corrupted (inconsistent arrays): {p}")
    label_list = labels.tolist()  # str per label, 100,000 in a few ms
    distinct = set(label_list)
    if len(distinct) != len(label_list) or "" in distinct:
        raise StoreError(f"store is corrupted (empty or repeated labels): {p}")
    if (counts < 1).any() or (counts > MAX_COUNT).any() or not np.all(np.isfinite(sums)):
        raise StoreError(f"store is corrupted (bad counts or non-finite sums): {p}")
    return StoreContents(
        label_list, sums, counts.astype(np.int64), str(a["model_fingerprint"]), str(a["metric"]), str(a["network_id"])
    )
