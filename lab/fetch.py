"""Named data sources: ``omniglot``, ``mnist`` and ``mnist-train``, the official files fetched once.

- ``omniglot``: the official zips ``images_background.zip`` / ``images_evaluation.zip`` (only the
  sets the split needs), read by ``omniglot_files.zip_chars``.
- ``mnist``: the 10,000-digit test set ``t10k-*-ubyte.gz``, the novel domain the project
  evaluates on (what ``../shared/data/mnist`` holds).
- ``mnist-train``: the 60,000-digit training set ``train-*-ubyte.gz``, to train on digits and
  evaluate on ``mnist`` with images the run never saw.

A folder named by ``EDGEMETA_DATA`` that already holds the files (its ``omniglot/`` or ``mnist/``
sub-folder, or itself) is used as it is. Otherwise the files live in ``EDGEMETA_CACHE`` (default
``~/.cache/edgemeta``) under ``omniglot/`` and ``mnist/``. Missing ones are downloaded from the
URLs torchvision's ``Omniglot`` and ``MNIST`` datasets download from, with a progress bar on stderr,
and checked against torchvision's md5 checksums. torchvision is imported only to download, so a
filled cache serves a runtime-only install too.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import shutil
import sys
import tempfile
from pathlib import Path

from edgemeta.runtime.errors import DataError

from .omniglot_files import OMNIGLOT_SETS

# name -> the cache sub-folder (and the kind of files it holds)
NAMES = {"omniglot": "omniglot", "mnist": "mnist", "mnist-train": "mnist"}
MNIST_PREFIX = {"mnist": "t10k", "mnist-train": "train"}
DEFAULT_CACHE = "~/.cache/edgemeta"
_said: set[str] = set()


def is_named(src: object) -> bool:
    """True for the names this module fetches (a local folder called ``mnist`` is ``./mnist``)."""
    return isinstance(src, str) and src in NAMES


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEMETA_CACHE") or DEFAULT_CACHE).expanduser()


def fetch(name: str, sets: tuple[str, ...] = OMNIGLOT_SETS) -> Path:
    """The local path that ``load_source`` reads for the named source ``name``.

    sets: the Omniglot sets the split needs (ignored for MNIST). Returns the folder holding the
    Omniglot files, or the MNIST images file (its labels file beside it). Says on stderr which
    copy it used.
    """
    local = _from_data_dir(name, sets)
    if local is not None:
        _say(f"data: {name} from EDGEMETA_DATA: {local}")
        return local
    root = cache_dir() / NAMES[name]
    files = _wanted_files(name, sets)
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        official = _official_files()
        for filename in missing:
            urls, md5 = official[filename]
            _download(root / filename, urls, md5)
        _say(f"data: {name} downloaded into the cache {root}")
    else:
        _say(f"data: {name} from the cache {root}")
    return root if NAMES[name] == "omniglot" else root / files[0]


def _wanted_files(name: str, sets: tuple[str, ...]) -> list[str]:
    if NAMES[name] == "omniglot":
        return [f"images_{s}.zip" for s in sets]
    prefix = MNIST_PREFIX[name]
    return [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"]


def _from_data_dir(name: str, sets: tuple[str, ...]) -> Path | None:
    """EDGEMETA_DATA's copy of ``name`` in a form ``load_source`` reads, else None."""
    base = os.environ.get("EDGEMETA_DATA")
    if not base:
        return None
    root = Path(base).expanduser()
    for folder in (root / NAMES[name], root):
        if NAMES[name] == "omniglot":
            if any(
                all((folder / form.format(s)).exists() for s in sets)
                for form in ("images_{}.npz", "images_{}.zip", "images_{}")
            ):
                return folder
            continue
        gz = _wanted_files(name, sets)[0]
        for images in (gz, gz.removesuffix(".gz")):
            labels = images.replace("images-idx3", "labels-idx1")
            if (folder / images).is_file() and (folder / labels).is_file():
                return folder / images
    return None


def _official_files() -> dict[str, tuple[list[str], str]]:
    """file name -> (URLs to try in turn, md5), as torchvision's dataset classes define them."""
    try:
        from torchvision.datasets import MNIST, Omniglot
    except ImportError:
        raise DataError(
            "downloading a named data source needs torchvision: pip install 'edgemeta[train]' "
            "(or give --data PATH to local files)"
        ) from None
    files = {
        f"images_{s}.zip": ([f"{Omniglot.download_url_prefix}/images_{s}.zip"], Omniglot.zips_md5[f"images_{s}"])
        for s in OMNIGLOT_SETS
    }
    for filename, md5 in MNIST.resources:
        files[filename] = ([mirror + filename for mirror in MNIST.mirrors], md5)
    return files


def _download(file: Path, urls: list[str], md5: str) -> None:
    """Download ``file`` from the first URL that answers; it appears only once its md5 matches."""
    from torchvision.datasets.utils import calculate_md5, download_url

    file.parent.mkdir(parents=True, exist_ok=True)
    # A private folder beside the target: a failed or interrupted download leaves nothing behind,
    # and processes fetching at once each rename a complete, checked file into place.
    tmp = Path(tempfile.mkdtemp(prefix=f".{file.name}.", dir=file.parent))
    failures = []
    try:
        for url in urls:
            try:
                # Older torchvision prints "Downloading ..." on stdout, which is for results (--json).
                with contextlib.redirect_stdout(sys.stderr):
                    download_url(url, str(tmp), file.name)
            except (OSError, http.client.HTTPException, ValueError) as e:
                failures.append(f"{url}: {e}")
                continue
            got = calculate_md5(tmp / file.name)
            if got != md5:
                raise DataError(
                    f"checksum mismatch for {file.name} from {url}: md5 {got}, expected {md5}; "
                    "nothing was kept, run again to retry"
                )
            os.replace(tmp / file.name, file)
            return
        raise DataError(
            f"cannot download {file.name} (no network?): {'; '.join(failures)}; or give --data PATH to local files"
        )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _say(message: str) -> None:
    if message not in _said:
        _said.add(message)
        print(message, file=sys.stderr)
