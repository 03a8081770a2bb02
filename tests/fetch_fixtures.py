"""Offline stand-ins for the official data downloads: tiny files in the official layouts, a local
HTTP server, and torchvision's URL and md5 tables pointed at them (for test_fetch.py and the
errors table)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import io
import shutil
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import write_toy_mnist
from PIL import Image

ALPHABETS, CHARACTERS, DRAWINGS = 2, 3, 4


def omniglot_zip(path: Path, set_name: str, seed: int = 0) -> Path:
    """``images_{set}.zip`` as the official release lays it out: ``images_{set}/Alphabet/characterNN/IIII_DD.png``
    with ALPHABETS x CHARACTERS characters of DRAWINGS 12x12 drawings (dark ink on white)."""
    rng = np.random.default_rng(seed)
    with zipfile.ZipFile(path, "w") as z:
        for a in range(ALPHABETS):
            for c in range(CHARACTERS):
                char_id = seed * 100 + a * CHARACTERS + c + 1
                for d in range(DRAWINGS):
                    img = np.full((12, 12), 255, dtype=np.uint8)
                    r, k = rng.integers(1, 8, size=2)
                    img[r : r + 4, k : k + 3] = 0
                    buf = io.BytesIO()
                    Image.fromarray(img).save(buf, format="PNG")
                    z.writestr(
                        f"images_{set_name}/Alpha{set_name}{a}/character{c + 1:02d}/{char_id:04d}_{d + 1:02d}.png",
                        buf.getvalue(),
                    )
    return path


def official_files(root: Path) -> Path:
    """A server folder: ``omniglot/images_*.zip`` and ``mnist/{t10k,train}-*-ubyte.gz`` (toy digits)."""
    (root / "omniglot").mkdir(parents=True)
    for seed, set_name in enumerate(("background", "evaluation")):
        omniglot_zip(root / "omniglot" / f"images_{set_name}.zip", set_name, seed)
    (root / "mnist").mkdir()
    write_toy_mnist(root / "mnist")
    for kind in ("images-idx3", "labels-idx1"):
        toy = root / "mnist" / f"toy-{kind}-ubyte.gz"
        shutil.copy(toy, root / "mnist" / f"t10k-{kind}-ubyte.gz")
        toy.rename(root / "mnist" / f"train-{kind}-ubyte.gz")
    return root


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[tuple[str, list[str]]]:
    """(base URL, the paths requested so far) of an HTTP server on 127.0.0.1 serving ``folder``."""
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, format, *args):
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests
    finally:
        server.shutdown()
        server.server_close()


def closed_url() -> str:
    """A local URL nothing listens on: what a machine without network gets."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def point_downloads(mp: pytest.MonkeyPatch, omniglot_url: str, mnist_mirrors: list[str], files: Path) -> None:
    """torchvision's Omniglot/MNIST URLs at the given places and its md5s at ``files``' copies."""
    from torchvision.datasets import MNIST, Omniglot

    mp.setattr(Omniglot, "download_url_prefix", omniglot_url)
    mp.setattr(
        Omniglot,
        "zips_md5",
        {f"images_{s}": md5(files / "omniglot" / f"images_{s}.zip") for s in ("background", "evaluation")},
    )
    mp.setattr(MNIST, "mirrors", mnist_mirrors)
    mp.setattr(MNIST, "resources", [(f.name, md5(f)) for f in sorted((files / "mnist").iterdir())])


def block_torchvision(mp: pytest.MonkeyPatch) -> None:
    """Imports of torchvision fail from now on, as on a runtime-only install."""
    for name in ("torchvision", "torchvision.datasets", "torchvision.datasets.utils"):
        mp.setitem(sys.modules, name, None)


@contextlib.contextmanager
def offline_downloads(folder: Path) -> Iterator[None]:
    """For the errors table: Omniglot's URL answers nothing (no network) and MNIST's mirror serves
    files that fail torchvision's own md5s; the cache is ``folder/cache``, EDGEMETA_DATA unset."""
    import importlib.util

    from edgemeta.lab import fetch

    mirror = folder / "mirror"
    mirror.mkdir(exist_ok=True)
    for prefix in ("t10k", "train"):
        for kind in ("images-idx3", "labels-idx1"):
            (mirror / f"{prefix}-{kind}-ubyte.gz").write_bytes(b"not the official file")
    with pytest.MonkeyPatch.context() as mp, serve(mirror) as (url, _):
        mp.setenv("EDGEMETA_CACHE", str(folder / "cache"))
        mp.delenv("EDGEMETA_DATA", raising=False)
        mp.setattr(fetch, "_said", set())
        if importlib.util.find_spec("torchvision") is not None:
            from torchvision.datasets import MNIST, Omniglot

            mp.setattr(Omniglot, "download_url_prefix", closed_url())
            mp.setattr(MNIST, "mirrors", [f"{url}/"])
        yield
