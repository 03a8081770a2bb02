"""Crash safety and concurrency, short versions of the scripts in ``stress/``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from tiny_models import class_batch, linear_model

from edgemeta.runtime import EmbeddingModel, FewShotClassifier, StoreError
from edgemeta.runtime.store import read_store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stress"))

fcntl = pytest.importorskip("fcntl")


@pytest.fixture
def clf(tmp_path):
    c = FewShotClassifier(EmbeddingModel(linear_model(tmp_path / "m.onnx")))
    c.enroll("a", class_batch(0, 2))
    return c


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_sigkill_during_save_leaves_one_complete_version(tmp_path):
    import kill_store_save

    stats, _ = kill_store_save.run(tmp_path, trials=5, seed=1)
    assert stats.trials == 5
    assert stats.failures == []
    assert kill_store_save.temps(tmp_path / "store.npz") == []


def test_stale_temp_files_of_the_store_are_removed_on_next_save(tmp_path, clf):
    store = tmp_path / "s.npz"
    stale = tmp_path / ".s.npz.dead1234.tmp"
    stale.write_bytes(b"half a store")
    other = tmp_path / ".t.npz.dead1234.tmp"  # another store's temp file: not ours to touch
    other.write_bytes(b"x")
    live = tmp_path / ".s.npz.live5678.tmp"  # a writer still holds its lock
    live.write_bytes(b"being written")
    with open(live, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        clf.save(store)
        assert live.exists()
    assert not stale.exists() and other.exists()
    assert read_store(store).labels == ["a"]


def test_failed_save_keeps_the_old_store_and_leaves_no_temp(tmp_path, clf, monkeypatch):
    store = tmp_path / "s.npz"
    clf.save(store)
    before = store.read_bytes()
    clf.enroll("b", class_batch(1, 2))

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", broken)
    with pytest.raises(StoreError, match=f"cannot write store {store}: No space left on device"):
        clf.save(store)
    assert store.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_threads_mixing_every_operation_agree_with_a_serial_order(tmp_path):
    import concurrency

    doc = concurrency.run(tmp_path, threads=8, total_ops=2000, seed=3, timeout=120)
    assert doc["hung_threads"] == 0
    assert doc["errors"] == 0, doc["first_errors"]
    assert doc["operations"] == 2000
    assert set(doc["by_operation"]) == set(concurrency.WEIGHTS)
