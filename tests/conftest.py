"""Shared fixtures. Real-data tests use EDGEMETA_DATA (default ../shared/data) and skip without it."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path | None:
    """The real data folder, or None when it is not there."""
    configured = os.environ.get("EDGEMETA_DATA")
    path = Path(configured) if configured else REPO.parent / "shared" / "data"
    return path if path.is_dir() else None


@pytest.fixture
def data_dir() -> Path:
    root = data_root()
    if root is None:
        pytest.skip("real data not found: set EDGEMETA_DATA or place ../shared/data beside the repo")
    return root


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


needs_torch = pytest.mark.skipif(not torch_available(), reason="needs the train/export extras (torch)")


def write_toy_mnist(root: Path) -> Path:
    """MNIST-format toy data in ``root``: 10 classes x 12 images of 16x16, a bright bar at the
    class's own row plus noise (learnable in a few dozen episodes)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(10), 12)
    images = rng.integers(0, 150, size=(len(labels), 16, 16)).astype(np.uint8)
    for i, c in enumerate(labels):
        images[i, 2 + c, 3:13] = np.maximum(images[i, 2 + c, 3:13], 170)
    for name, arr in (("toy-images-idx3-ubyte.gz", images), ("toy-labels-idx1-ubyte.gz", labels)):
        header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
        (root / name).write_bytes(gzip.compress(header + arr.astype(np.uint8).tobytes()))
    return root
