"""runtime.datasets: every source kind on tiny synthetic data, hostile input, and the real split sizes."""

from __future__ import annotations

import gzip
import io
import struct
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from edgemeta.lab.datasets import SPLITS, load_source
from edgemeta.runtime.errors import DataError
from edgemeta.runtime.preprocess import PreprocessSpec

SPEC = PreprocessSpec(size=(14, 14))


def _drawing(seed: int) -> np.ndarray:
    img = np.ones((30, 30), dtype=bool)  # True = white background, like the Omniglot npz
    rng = np.random.default_rng(seed)
    r, c = rng.integers(5, 20, size=2)
    img[r : r + 6, c : c + 2] = False
    return img


def test_class_folder_tree(tmp_path):
    for k in range(3):
        (tmp_path / f"cls{k}").mkdir()
        for j in range(4):
            Image.fromarray((~_drawing(10 * k + j)).astype(np.uint8) * 255).save(tmp_path / f"cls{k}" / f"{j}.png")
    data = load_source(tmp_path, SPEC)
    assert data.images.shape == (12, 14, 14, 1) and data.images.dtype == np.uint8
    assert data.class_names == ["cls0", "cls1", "cls2"] and data.class_groups == ["", "", ""]
    assert data.counts().tolist() == [4, 4, 4]


def test_official_zip_and_rotations(tmp_path):
    with zipfile.ZipFile(tmp_path / "images_background.zip", "w") as z:
        for a in ("Alpha", "Beta"):
            for c in ("character01", "character02"):
                for d in range(3):
                    buf = io.BytesIO()
                    Image.fromarray(_drawing(d).astype(np.uint8) * 255).convert("1").save(buf, "PNG")
                    z.writestr(f"images_background/{a}/{c}/0001_{d:02d}.png", buf.getvalue())
    data = load_source(tmp_path / "images_background.zip", SPEC, rotations=True)
    assert data.num_classes == 16 and data.class_names[1] == "Alpha/character01/rot090"
    assert data.class_groups[0] == "Alpha"
    plain = load_source(tmp_path, SPEC, split="background")
    assert plain.num_classes == 4 and plain.class_names[0] == "Alpha/character01"
    # Polarity: dark-on-light scans become ink-bright with a dark background.
    assert plain.images[:, 0, 0].max() == 0 and plain.images.max() > 0
    np.testing.assert_array_equal(data.images[3:6], np.rot90(plain.images[0:3], 1, axes=(1, 2)))


def _idx(path, arr: np.ndarray, gz: bool = True) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_mnist_idx(tmp_path):
    images = np.zeros((6, 28, 28), dtype=np.uint8)
    images[:, 10:18, 12:15] = 255
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", images)
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([3, 1, 3, 1, 7, 7]))
    data = load_source(tmp_path, SPEC)
    assert data.class_names == ["1", "3", "7"] and data.targets.tolist() == [1, 0, 1, 0, 2, 2]
    with pytest.raises(DataError, match="split"):
        load_source(tmp_path, SPEC, split="background")


@pytest.mark.parametrize("payload", [b"", b"garbage" * 10, bytes([0, 0, 8, 3]) + struct.pack(">III", 100, 28, 28)])
def test_mnist_hostile(tmp_path, payload):
    (tmp_path / "x-images-idx3-ubyte").write_bytes(payload)
    _idx(tmp_path / "x-labels-idx1-ubyte", np.zeros(100), gz=False)
    with pytest.raises(DataError):
        load_source(tmp_path / "x-images-idx3-ubyte", SPEC)


def test_bad_sources(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_source(tmp_path / "nope", SPEC)
    with pytest.raises(DataError, match="unknown split"):
        load_source(tmp_path, SPEC, split="train")
    (tmp_path / "images_background.npz").write_bytes(b"PK not really")
    with pytest.raises(DataError):
        load_source(tmp_path, SPEC, split="background")
    np.savez(tmp_path / "images_background.npz", images=np.array([object()], dtype=object))
    with pytest.raises(DataError):
        load_source(tmp_path, SPEC, split="background")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_source(empty, SPEC)


def test_torch_free():
    assert "torch" not in sys.modules or True  # other tests may import torch; check in a subprocess
    import subprocess

    code = "import sys, edgemeta.lab.datasets; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_real_split_sizes(data_dir):
    spec = PreprocessSpec()
    omni = data_dir / "omniglot"
    assert load_source(omni, spec, "background").num_classes == 964
    assert load_source(omni, spec, "evaluation").num_classes == 659
    assert load_source(omni, spec, "background", rotations=True).num_classes == 964 * 4
    for split, n in (("vinyals-train", 1028), ("vinyals-val", 172), ("vinyals-test", 423)):
        assert load_source(omni, spec, split).num_classes == 4 * n
        assert load_source(omni, spec, split, rotations=False).num_classes == n
    mnist = load_source(data_dir / "mnist", spec)
    assert mnist.num_classes == 10 and len(mnist.targets) == 10000
    assert set(SPLITS) >= {"background", "vinyals-test"}
