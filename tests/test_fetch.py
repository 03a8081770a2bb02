"""Named data sources (lab/fetch.py) offline: tiny official-layout files served from 127.0.0.1
through torchvision's download utilities; the cache, checksums, EDGEMETA_DATA, a missing torchvision."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import needs_torch
from fetch_fixtures import ALPHABETS, CHARACTERS, block_torchvision, closed_url, official_files, point_downloads, serve
from PIL import Image

from edgemeta.cli import main
from edgemeta.lab import fetch
from edgemeta.lab.datasets import load_source
from edgemeta.runtime.errors import DataError
from edgemeta.runtime.preprocess import PreprocessSpec

SPEC = PreprocessSpec(size=(10, 10))


@pytest.fixture
def files(tmp_path) -> Path:
    return official_files(tmp_path / "official")


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("EDGEMETA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("EDGEMETA_DATA", raising=False)
    monkeypatch.setattr(fetch, "_said", set())
    return tmp_path / "cache"


@pytest.fixture
def server(files, monkeypatch):
    """Downloads go to a local server of ``files``; yields the list of requested paths."""
    pytest.importorskip("torchvision")
    with serve(files) as (url, requests):
        point_downloads(monkeypatch, f"{url}/omniglot", [closed_url() + "/", f"{url}/mnist/"], files)
        yield requests


def test_omniglot_downloads_once_then_reads_the_cache(files, cache, server, capfd):
    data = load_source("omniglot", SPEC, split="background")
    out, err = capfd.readouterr()
    assert out == "" and "100%" in err and "downloaded into the cache" in err  # progress bar on stderr
    assert server and all("images_background.zip" in p for p in server)  # only the set the split needs
    assert sorted(p.name for p in (cache / "omniglot").iterdir()) == ["images_background.zip"]
    assert (cache / "omniglot" / "images_background.zip").read_bytes() == (
        files / "omniglot" / "images_background.zip"
    ).read_bytes()
    direct = load_source(files / "omniglot" / "images_background.zip", SPEC)
    assert data.num_classes == ALPHABETS * CHARACTERS and data.class_names == direct.class_names
    assert np.array_equal(data.images, direct.images)

    served = len(server)
    again = load_source("omniglot", SPEC, split="background")
    assert len(server) == served  # no request at all
    assert np.array_equal(again.images, data.images)
    assert "from the cache" in capfd.readouterr().err


def test_mnist_is_the_test_set_and_mnist_train_the_training_set(files, cache, server):
    test = load_source("mnist", SPEC)
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == [
        "t10k-images-idx3-ubyte.gz",
        "t10k-labels-idx1-ubyte.gz",
    ]
    load_source("mnist-train", SPEC)
    assert {p.rsplit("/", 1)[1] for p in server} == {
        f"{s}-{k}-ubyte.gz" for s in ("t10k", "train") for k in ("images-idx3", "labels-idx1")
    }
    direct = load_source(files / "mnist" / "t10k-images-idx3-ubyte.gz", SPEC)
    assert np.array_equal(test.images, direct.images) and np.array_equal(test.targets, direct.targets)
    with pytest.raises(DataError, match="--split applies to Omniglot sources only"):
        load_source("mnist", SPEC, split="background")


def test_checksum_mismatch_keeps_nothing(files, cache, server, monkeypatch):
    from torchvision.datasets import MNIST

    monkeypatch.setattr(MNIST, "resources", [(name, "0" * 32) for name, _ in MNIST.resources])
    with pytest.raises(DataError, match="checksum mismatch for t10k-images-idx3-ubyte.gz") as e:
        load_source("mnist", SPEC)
    assert "\n" not in str(e.value)
    assert list((cache / "mnist").iterdir()) == []  # neither the file nor a half-written temporary


def test_no_network_is_one_line_and_keeps_nothing(files, cache, server, monkeypatch):
    from torchvision.datasets import Omniglot

    monkeypatch.setattr(Omniglot, "download_url_prefix", closed_url())
    with pytest.raises(DataError, match=r"cannot download images_evaluation.zip \(no network\?\)"):
        load_source("omniglot", SPEC, split="evaluation")
    assert list((cache / "omniglot").iterdir()) == []


def test_without_torchvision_a_filled_cache_still_serves(files, cache, monkeypatch):
    block_torchvision(monkeypatch)
    with pytest.raises(DataError, match=r"needs torchvision: pip install 'edgemeta\[train\]'"):
        load_source("mnist", SPEC)
    shutil.copytree(files / "mnist", cache / "mnist")
    assert load_source("mnist", SPEC).num_classes == 10


def test_edgemeta_data_is_used_without_downloading(files, cache, monkeypatch, capfd):
    monkeypatch.setenv("EDGEMETA_DATA", str(files))
    block_torchvision(monkeypatch)  # a download would fail loudly
    assert load_source("omniglot", SPEC).num_classes == 2 * ALPHABETS * CHARACTERS
    assert load_source("mnist-train", SPEC).num_classes == 10
    err = capfd.readouterr().err
    assert f"omniglot from EDGEMETA_DATA: {files / 'omniglot'}" in err
    assert f"mnist-train from EDGEMETA_DATA: {files / 'mnist' / 'train-images-idx3-ubyte.gz'}" in err
    assert not cache.exists()


def test_a_name_that_is_no_source(cache):
    with pytest.raises(
        DataError, match="data source not found: omniglott .nor one of the named sources omniglot, mnist"
    ):
        load_source("omniglott", SPEC)


def test_eval_json_stdout_stays_one_document(files, cache, server):
    res = CliRunner().invoke(
        main, ["eval", "--data", "mnist", "--way", "3", "--shot", "1", "--query", "2", "--episodes", "3", "--json"]
    )
    assert res.exit_code == 0, res.output + res.stderr
    assert json.loads(res.stdout)["data"] == "mnist" and "downloaded into the cache" in res.stderr


def test_export_reads_a_run_recorded_name(files, cache, server):
    from edgemeta.export.validation_data import load_images

    images = load_images("mnist", None, SPEC, explicit=False)
    assert not images.synthetic and images.source == "mnist"


@needs_torch
def test_train_on_a_named_source(files, cache, server, tmp_path):
    res = CliRunner().invoke(
        main,
        [
            "train",
            "--data",
            "omniglot",
            "--out",
            str(tmp_path / "run"),
            "--way",
            "2",
            "--shot",
            "1",
            "--query",
            "1",
            "--episodes",
            "2",
            "--device",
            "cpu",
            "--size",
            "16",
            "--val-every",
            "1",
            "--val-episodes",
            "1",
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"] == "omniglot" and config["split"] == "background" and config["rotations"]
    assert sorted(p.name for p in (cache / "omniglot").iterdir()) == ["images_background.zip"]


@pytest.mark.data
def test_shared_data_serves_the_names_without_a_download(data_dir, cache, monkeypatch):
    monkeypatch.setenv("EDGEMETA_DATA", str(data_dir))
    block_torchvision(monkeypatch)
    named = load_source("mnist", SPEC)
    direct = load_source(data_dir / "mnist", SPEC)
    assert np.array_equal(named.images, direct.images) and np.array_equal(named.targets, direct.targets)
    named = load_source("omniglot", SPEC, split="evaluation")
    assert named.class_names == load_source(data_dir / "omniglot", SPEC, split="evaluation").class_names
    assert not cache.exists()


@pytest.mark.data
def test_official_zip_gives_the_npz_classes_in_the_npz_order(data_dir, tmp_path):
    """The downloaded zips and the shared npz files make the same episodes: same pixels, same class order."""
    from edgemeta.lab.omniglot_files import character_table, read_npz_images

    table = character_table()["evaluation"]
    alphabets = {"Syriac_(Serto)", "Sylheti"}  # the npz lists Syriac first; sorted names would not
    rows = [i for i, (a, _) in enumerate(table) if a in alphabets]
    images = read_npz_images(data_dir / "omniglot" / "images_evaluation.npz")
    with zipfile.ZipFile(tmp_path / "images_evaluation.zip", "w") as z:
        for i in rows:
            a, c = table[i]
            for d, drawing in enumerate(images[i]):
                buf = io.BytesIO()
                Image.fromarray(drawing).save(buf, format="PNG")  # bool -> 1-bit, as the release's PNGs
                z.writestr(f"images_evaluation/{a}/{c}/{i:04d}_{d + 1:02d}.png", buf.getvalue())
    from_zip = load_source(tmp_path, SPEC, split="evaluation")
    from_npz = load_source(data_dir / "omniglot", SPEC, split="evaluation")
    keep = np.array([g in alphabets for g in from_npz.class_groups])
    assert from_zip.class_names == [n for n, k in zip(from_npz.class_names, keep) if k]
    assert np.array_equal(from_zip.images, from_npz.images[keep[from_npz.targets]])


@needs_torch
def test_only_local_rank_0_downloads_then_the_others_read_its_copy(files, cache, server, monkeypatch):
    from types import SimpleNamespace

    from edgemeta.train import data as train_data
    from edgemeta.train.distributed import DistInfo

    waited = []
    monkeypatch.setattr(train_data.distributed, "barrier", lambda info: waited.append(info.rank))
    cfg = SimpleNamespace(data="omniglot", split="background")
    train_data.fetch_once(cfg, DistInfo(world=2, rank=1, local_rank=1))
    assert not server and not cache.exists()  # a rank other than 0 waits at the barrier, fetches nothing
    train_data.fetch_once(cfg, DistInfo(world=2, rank=0, local_rank=0))
    assert server and (cache / "omniglot" / "images_background.zip").is_file()
    assert waited == [1, 0]
    train_data.fetch_once(SimpleNamespace(data=str(files / "omniglot"), split=None), DistInfo(world=2))
    assert waited == [1, 0]  # a folder needs no download and no barrier
