"""Fuzz target for every data-source parser of ``lab/datasets.py`` (``load_source``)."""

from __future__ import annotations

import gzip
import io
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from fuzz_targets import NPZ_ARRAYS, _npz_bytes, any_image_bytes, image_file, mutated, only_edgemeta_errors
from hypothesis import strategies as st

from edgemeta.runtime import PreprocessSpec

SPEC = PreprocessSpec(size=(8, 8))
MEMBER_NAMES = st.sampled_from(
    (
        "images_background/Alpha/character01/a.png",
        "images_background/Alpha/character01/b.png",
        "images_background/Beta/character02/c.png",
        "x.png",
        "../../evil.png",
        "A/B/C/D.png",
        "images_background/Alpha/character01/",
        "Alpha/character03/d.PNG",
    )
)
COMPRESSION = st.sampled_from((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA))


def _idx(magic_ndim: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return b"\0\0\x08" + bytes([magic_ndim]) + b"".join(s.to_bytes(4, "big") for s in shape) + payload


IDX = st.one_of(
    st.binary(max_size=200),
    st.builds(
        _idx,
        st.integers(0, 4),
        st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=4).map(tuple),
        st.binary(max_size=200),
    ),
    st.builds(
        _idx,
        st.just(3),
        st.tuples(st.integers(0, 4), st.integers(0, 9), st.integers(0, 9)),
        st.binary(min_size=0, max_size=400),
    ),
)
LABELS_IDX = st.one_of(
    st.binary(max_size=40), st.builds(_idx, st.just(1), st.tuples(st.integers(0, 6)), st.binary(max_size=8))
)


def _zip(members: list[tuple[str, bytes]], method: int) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=method) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


ZIPS = st.builds(
    _zip,
    st.lists(st.tuples(MEMBER_NAMES, st.one_of(any_image_bytes(), st.just(image_file("PNG", "L")))), max_size=5),
    COMPRESSION,
)


@st.composite
def sources(draw: st.DrawFn) -> tuple[str, dict[str, bytes], str | None]:
    """(kind, {relative path: bytes}, split): the files of one fake data source."""
    kind = draw(st.sampled_from(("npz", "idx", "idx-gz", "zip", "folder", "omniglot-dir")))
    split = draw(st.sampled_from((None, "background", "vinyals-test")))
    if kind == "npz":
        data = draw(
            st.one_of(
                st.binary(max_size=300),
                st.builds(_npz_bytes, NPZ_ARRAYS, st.booleans()),
                st.builds(
                    _npz_bytes,
                    st.fixed_dictionaries({"images": st.just(np.ones((2, 2, 3, 3), np.uint8))}),
                    st.booleans(),
                ).flatmap(mutated),
            )
        )
        return kind, {"images_background.npz": data}, split
    if kind in ("idx", "idx-gz"):
        images, labels = draw(IDX), draw(LABELS_IDX)
        if kind == "idx-gz":
            images, labels = (
                draw(st.one_of(st.just(gzip.compress(images)), mutated(gzip.compress(images)))),
                gzip.compress(labels),
            )
            return kind, {"t10k-images-idx3-ubyte.gz": images, "t10k-labels-idx1-ubyte.gz": labels}, split
        return kind, {"t10k-images-idx3-ubyte": images, "t10k-labels-idx1-ubyte": labels}, split
    if kind == "zip":
        return kind, {"images_background.zip": draw(st.one_of(ZIPS, ZIPS.flatmap(mutated)))}, split
    names = st.sampled_from(("c1/a.png", "c1/b.png", "c2/x.jpg", "c2/sub/y.bmp", ".hidden/z.png", "c3/readme.txt"))
    files = draw(st.dictionaries(names, any_image_bytes(), max_size=4))
    if kind == "omniglot-dir":
        files = {f"images_background/Alpha/{k}": v for k, v in files.items()}
    return kind, files, split


def check_source(args: tuple[str, dict[str, bytes], str | None]) -> None:
    from edgemeta.lab.datasets import load_source

    kind, files, split = args
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "src"
        root.mkdir()
        for rel, data in files.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        only_edgemeta_errors(lambda: load_source(root, SPEC, split=split))
        for rel in files:
            if kind in ("npz", "idx", "idx-gz", "zip"):
                only_edgemeta_errors(lambda: load_source(root / rel, SPEC, split=None))


SOURCES = sources()
