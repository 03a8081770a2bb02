"""Shared fixtures. Real-data tests use EDGEMETA_DATA (default ../shared/data) and skip without it."""

from __future__ import annotations

import os
from pathlib import Path

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
