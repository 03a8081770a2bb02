"""Stores under concurrency and permissions: the write lock, ``update``, ``remove``, read-only files.

``stress/store_concurrency.py`` runs the process-level check at full size.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from tiny_models import class_batch, linear_model

from edgemeta.cli import main
from edgemeta.runtime import EdgemetaError, EmbeddingModel, FewShotClassifier, StoreError
from edgemeta.runtime.store import read_store
from edgemeta.runtime.store_lock import lock_path, store_lock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "stress"))

posix_only = pytest.mark.skipif(os.name != "posix", reason="needs POSIX signals and file modes")


@pytest.fixture
def model(tmp_path) -> EmbeddingModel:
    return EmbeddingModel(linear_model(tmp_path / "m.onnx"))


@pytest.fixture
def store(tmp_path, model) -> Path:
    clf = FewShotClassifier(model)
    clf.enroll("a", class_batch(0, 2))
    clf.enroll("b", class_batch(1, 2))
    clf.save(tmp_path / "s.npz")
    return tmp_path / "s.npz"


def cli(*args: str):
    res = CliRunner().invoke(main, [str(a) for a in args])
    return res, [line for line in res.output.splitlines() if line.strip()]


@posix_only
def test_concurrent_processes_with_kills_lose_nothing(tmp_path):
    import store_concurrency

    doc = store_concurrency.run(tmp_path, enrolls=4, sizes=[2, 4], kill_wave=4, seed=1)
    assert doc["completed"] > 0 and doc["processes"] == sum(doc["waves"]) + 4
    assert doc["lock_holder_killed"] == 1  # the writers queued behind a killed lock holder went on
    assert doc["errors"] == 0, doc["first_errors"]
    assert (doc["lost"], doc["problems"]) == (0, 0), doc["first_problems"]


def test_threads_updating_one_store_keep_every_change(tmp_path, model):
    path = tmp_path / "s.npz"

    def worker(t: int) -> None:
        for i in range(4):
            with FewShotClassifier.update(path, model) as clf:
                clf.add_embeddings(f"t{t}-{i}", np.ones(model.embedding_dim), 1)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(read_store(path).labels) == sorted(f"t{t}-{i}" for t in range(6) for i in range(4))


def test_update_saves_on_success_and_nothing_when_the_block_raises(tmp_path, model, store):
    with FewShotClassifier.update(store, model) as clf:
        assert clf.labels == ["a", "b"]
        clf.enroll("c", class_batch(2, 3))
    assert read_store(store).labels == ["a", "b", "c"]
    before = store.read_bytes()
    with pytest.raises(RuntimeError, match="changed my mind"), FewShotClassifier.update(store, model) as clf:
        clf.remove("a")
        raise RuntimeError("changed my mind")
    assert store.read_bytes() == before
    with store_lock(store, timeout=0):  # released after the failed block: free at once
        pass


def test_update_creates_a_missing_store_and_a_failed_first_update_creates_nothing(tmp_path, model):
    path = tmp_path / "new.npz"
    with pytest.raises(ValueError), FewShotClassifier.update(path, model) as clf:
        assert clf.labels == []
        raise ValueError
    assert not path.exists()
    with FewShotClassifier.update(path, model) as clf:
        clf.enroll("x", class_batch(0, 1))
    assert read_store(path).labels == ["x"]


def test_lock_timeout_names_the_store_and_leaves_it_alone(model, store):
    before = store.read_bytes()
    with store_lock(store):  # held by this test: every other open of the lock file must wait
        with (
            pytest.raises(StoreError, match=f"timed out after 0.05 s waiting for the write lock of store {store}"),
            FewShotClassifier.update(store, model, lock_timeout=0.05),
        ):
            pass
        res, lines = cli("remove", "--store", store, "--lock-timeout", "0", "a")
    expected = f"Error: timed out after 0 s waiting for the write lock of store {store} (another process is writing it)"
    assert res.exit_code == 1 and lines == [expected]
    assert store.read_bytes() == before
    assert lock_path(store).exists()  # never deleted: unlinking a lock file races with its next user


@posix_only
def test_a_killed_holder_leaves_no_stale_lock(store):
    code = (
        "import sys; from edgemeta.runtime.store_lock import store_lock; "
        f"cm = store_lock({str(store)!r}); cm.__enter__(); print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match="timed out"), store_lock(store, timeout=0):
            pass
    finally:
        holder.kill()
        holder.wait()
    with store_lock(store, timeout=0):  # the kernel dropped the dead holder's lock
        pass


@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_lock_timeout_must_be_zero_or_more(store, bad):
    with pytest.raises(EdgemetaError, match="lock timeout must be 0 or more"), store_lock(store, timeout=bad):
        pass


@posix_only
def test_read_only_store_is_refused_and_keeps_its_mode(model, store, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(class_batch(2, 1)[0]).save(tmp_path / "i.png")
    store.chmod(0o444)
    before = store.read_bytes()
    clf = FewShotClassifier.load(store, model)
    with pytest.raises(StoreError, match=f"store is read-only: {store}"):
        clf.save(store)
    with pytest.raises(StoreError, match="read-only"), FewShotClassifier.update(store, model):
        pass
    for args in (
        ["enroll", "--model", tmp_path / "m.onnx", "--store", store, "c", tmp_path / "i.png"],
        ["remove", "--store", store, "a"],
    ):
        res, lines = cli(*args)
        assert res.exit_code == 1 and lines == [
            f"Error: store is read-only: {store} (make the file writable to change it)"
        ]
    assert store.read_bytes() == before and store.stat().st_mode & 0o777 == 0o444


@posix_only
@pytest.mark.parametrize("mode", [0o600, 0o640, 0o664])
def test_a_replaced_store_keeps_its_mode(model, store, mode):
    store.chmod(mode)
    with FewShotClassifier.update(store, model) as clf:
        clf.enroll("c", class_batch(2, 1))
    assert store.stat().st_mode & 0o777 == mode and "c" in read_store(store).labels


def test_write_errors_name_the_store_not_the_temp_file(model, store, monkeypatch):
    import tempfile

    def denied(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(Path(dir) / ".s.npz.x1y2.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(StoreError) as err:
        FewShotClassifier.load(store, model).save(store)
    assert str(err.value) == f"cannot write store {store}: no permission to write in folder {store.parent}"


@posix_only
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_errors_name_the_store(model, store):
    store.parent.chmod(0o555)
    try:
        with (
            pytest.raises(StoreError, match=f"cannot write store {store}: no permission"),
            FewShotClassifier.update(store, model),
        ):
            pass
        with pytest.raises(StoreError, match=f"cannot write store {store}: no permission to write in folder"):
            FewShotClassifier.load(store, model).save(store)
    finally:
        store.parent.chmod(0o755)


def test_missing_folder_error_names_the_store(model, tmp_path):
    path = tmp_path / "nofolder" / "s.npz"
    with (
        pytest.raises(StoreError, match=f"cannot write store {path}: folder {path.parent} does not exist"),
        FewShotClassifier.update(path, model),
    ):
        pass
    assert not path.parent.exists()


def test_remove_command(store):
    res, lines = cli("remove", "--store", store, "--json", "a", "a")
    assert res.exit_code == 0 and json.loads(lines[0]) == {"store": str(store), "removed": ["a"], "classes": 1}
    assert read_store(store).labels == ["b"]
    before = store.read_bytes()
    res, lines = cli("remove", "--store", store, "b", "zz", "yy")
    assert res.exit_code == 1 and lines == [f"Error: store {store} has no class named 'zz', 'yy'"]
    assert store.read_bytes() == before  # all or nothing: b stays
    res, lines = cli("remove", "--store", store, "b")
    assert res.exit_code == 0 and lines[-1] == f"store {store}: 0 class(es)"
    assert read_store(store).labels == []
