"""Fuzz targets shared by ``tests/test_fuzz_*.py`` (few examples) and ``stress/fuzz_all.py`` (many).

Each target takes one generated input and may raise only ``EdgemetaError`` subclasses: any
other exception (or a crash) is a finding. ``TARGETS`` maps a name to (strategy, check).
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from edgemeta.runtime import EdgemetaError, EmbeddingModel, FewShotClassifier, PreprocessSpec, prepare_uint8  # noqa: E402
from edgemeta.runtime.metadata import ModelMetadata  # noqa: E402
from edgemeta.runtime.store import StoreContents, read_store, write_store  # noqa: E402

IMAGE_FORMATS = ("PNG", "GIF", "BMP", "TIFF", "JPEG", "WEBP", "PPM", "ICO", "TGA")
MAGIC = (
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"BM",
    b"\xff\xd8\xff",
    b"II*\x00",
    b"MM\x00*",
    b"P5\n",
    b"RIFF\x00\x00\x00\x00WEBP",
    b"\x00\x00\x01\x00",
    b"PK\x03\x04",
    b"\x93NUMPY",
)
PIL_MODES = (
    "1",
    "L",
    "P",
    "RGB",
    "RGBA",
    "CMYK",
    "YCbCr",
    "LAB",
    "HSV",
    "I",
    "F",
    "LA",
    "PA",
    "RGBX",
    "RGBa",
    "La",
    "I;16",
    "I;16B",
    "I;16L",
)
DTYPES = (
    "uint8",
    "int8",
    "uint16",
    "int16",
    "uint32",
    "int32",
    "uint64",
    "int64",
    "float16",
    "float32",
    "float64",
    "bool",
    "complex64",
    ">u2",
    ">f4",
    "U3",
    "S2",
    "M8[s]",
    "m8[s]",
)


def only_edgemeta_errors(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except EdgemetaError:
        pass


# ---------------------------------------------------------------- generic byte strategies


def mutated(base: bytes) -> st.SearchStrategy[bytes]:
    """``base`` with random byte flips, a truncation, and random bytes appended."""
    flips = st.lists(st.tuples(st.integers(0, max(len(base) - 1, 0)), st.integers(0, 255)), max_size=8)
    return st.builds(_mutate, st.just(base), flips, st.integers(0, len(base)), st.binary(max_size=16), st.booleans())


def _mutate(base: bytes, flips: list[tuple[int, int]], cut: int, tail: bytes, truncate: bool) -> bytes:
    data = bytearray(base)
    for pos, value in flips:
        if pos < len(data):
            data[pos] = value
    return bytes(data[:cut] if truncate else data) + tail


def with_magic() -> st.SearchStrategy[bytes]:
    return st.builds(lambda m, rest: m + rest, st.sampled_from(MAGIC), st.binary(max_size=300))


@cache
def image_file(fmt: str, mode: str) -> bytes:
    img = Image.fromarray((np.arange(64 * 48, dtype=np.uint32) % 251).astype(np.uint8).reshape(48, 64)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def any_image_bytes() -> st.SearchStrategy[bytes]:
    valid = st.sampled_from([(f, m) for f in IMAGE_FORMATS for m in ("L", "RGB")]).map(lambda fm: image_file(*fm))
    return st.one_of(st.binary(max_size=400), with_magic(), valid.flatmap(mutated))


# ---------------------------------------------------------------- images

SPECS = st.builds(
    lambda size, channels, resize, polarity: PreprocessSpec(
        size=size, channels=channels, resize=resize, polarity=polarity, mean=(0.5,) * channels, std=(0.25,) * channels
    ),
    st.tuples(st.integers(1, 33), st.integers(1, 33)),
    st.sampled_from((1, 3)),
    st.sampled_from(("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")),
    st.sampled_from(("light_on_dark", "dark_on_light", "none")),
)


def check_image_bytes(args: tuple[bytes, str, PreprocessSpec]) -> None:
    data, suffix, spec = args
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"img{suffix}"
        path.write_bytes(data)
        only_edgemeta_errors(lambda: _check_batch(prepare_uint8(path, spec), spec))


def _check_batch(batch: np.ndarray, spec: PreprocessSpec, n: int = 1) -> None:
    assert batch.dtype == np.uint8 and batch.shape == (n, spec.size[0], spec.size[1], spec.channels), batch.shape


IMAGE_BYTES = st.tuples(any_image_bytes(), st.sampled_from((".png", ".jpg", ".gif", ".tif", "")), SPECS)

ARRAYS = st.tuples(
    hnp.arrays(st.sampled_from(DTYPES).map(np.dtype), hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=7)),
    SPECS,
)


def check_array(args: tuple[np.ndarray, PreprocessSpec]) -> None:
    arr, spec = args
    only_edgemeta_errors(lambda: prepare_uint8(arr, spec))
    only_edgemeta_errors(lambda: prepare_uint8([arr, arr], spec))


def _pil_image(mode: str, w: int, h: int, seed: int) -> Image.Image:
    img = Image.new(mode, (w, h))
    raw = np.random.default_rng(seed).integers(0, 256, len(img.tobytes()), dtype=np.uint8).tobytes()
    img.frombytes(raw)
    return img


PIL_IMAGES = st.tuples(
    st.builds(
        _pil_image, st.sampled_from(PIL_MODES), st.integers(1, 40), st.integers(1, 40), st.integers(0, 2**32 - 1)
    ),
    SPECS,
)


def check_pil(args: tuple[Image.Image, PreprocessSpec]) -> None:
    img, spec = args
    only_edgemeta_errors(lambda: _check_batch(prepare_uint8(img, spec), spec))


# ---------------------------------------------------------------- stores


@cache
def valid_store() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.npz"
        write_store(
            path,
            StoreContents(
                ["a", "b/../../x", "c\x1b"], np.arange(12.0).reshape(3, 4), np.array([1, 2, 3]), "f" * 64, "sqeuclidean"
            ),
        )
        return path.read_bytes()


STORE_KEYS = ("format_version", "labels", "sums", "counts", "model_fingerprint", "metric", "extra")
NPZ_ARRAYS = st.dictionaries(
    st.sampled_from(STORE_KEYS),
    hnp.arrays(st.sampled_from(DTYPES).map(np.dtype), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)),
    max_size=7,
)


def _npz_bytes(arrays: dict[str, np.ndarray], compressed: bool) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


STORE_BYTES = st.one_of(
    st.binary(max_size=600),
    with_magic(),
    st.deferred(lambda: mutated(valid_store())),
    st.builds(_npz_bytes, NPZ_ARRAYS, st.booleans()),
    st.deferred(lambda: mutated(_npz_bytes({"labels": np.array(["a"])}, True))),
)


def check_store(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.npz"
        path.write_bytes(data)
        only_edgemeta_errors(lambda: read_store(path))
        only_edgemeta_errors(lambda: FewShotClassifier.load(path, _store_model()))


@cache
def _store_model() -> EmbeddingModel:
    from tiny_models import linear_model, metadata

    folder = Path(tempfile.mkdtemp(prefix="fuzz-model-"))
    return EmbeddingModel(linear_model(folder / "m.onnx", weights=np.ones((64, 4)), meta=metadata(4)))


# ---------------------------------------------------------------- model metadata and ONNX

_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(-(10**500), 10**500),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
JSON_VALUES = st.recursive(
    _JSON_LEAVES,
    lambda kids: st.one_of(st.lists(kids, max_size=4), st.dictionaries(st.text(max_size=8), kids, max_size=4)),
    max_leaves=12,
)


def _meta_variant(changes: dict[str, Any], pre_changes: dict[str, Any], drop: list[str]) -> str:
    from tiny_models import metadata

    doc = metadata(4)
    doc.update(changes)
    if isinstance(doc.get("preprocess"), dict):
        doc["preprocess"] = {**doc["preprocess"], **pre_changes}
    for k in drop:
        doc.pop(k, None)
    return json.dumps(doc)


META_KEYS = (
    "format_version",
    "embedding_dim",
    "metric",
    "threshold",
    "input_name",
    "output_name",
    "preprocess",
    "training",
    "accuracy",
)
PRE_KEYS = ("size", "channels", "resize", "polarity", "auto_polarity", "mean", "std")
METADATA_TEXT = st.one_of(
    st.text(max_size=200),
    JSON_VALUES.map(json.dumps),
    st.builds(
        _meta_variant,
        st.dictionaries(st.sampled_from(META_KEYS), JSON_VALUES, max_size=3),
        st.dictionaries(st.sampled_from(PRE_KEYS), JSON_VALUES, max_size=3),
        st.lists(st.sampled_from(META_KEYS), max_size=2),
    ),
)


def check_metadata(text: str) -> None:
    only_edgemeta_errors(lambda: ModelMetadata.from_json(text))


@cache
def valid_onnx() -> bytes:
    from tiny_models import linear_model

    with tempfile.TemporaryDirectory() as tmp:
        return linear_model(Path(tmp) / "m.onnx", weights=np.ones((64, 4))).read_bytes()


ONNX_BYTES = st.one_of(st.binary(max_size=300), st.deferred(lambda: mutated(valid_onnx())))


def check_onnx(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.onnx"
        path.write_bytes(data)

        def load_and_embed() -> None:
            model = EmbeddingModel(path)
            model.embed(np.zeros((2, 5, 5), dtype=np.uint8))

        only_edgemeta_errors(load_and_embed)
