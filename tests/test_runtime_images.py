"""Image forms, conversion, polarity, and the refusals of bad images."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tiny_models import SIZE, class_image, linear_model

from edgemeta.runtime import EmbeddingModel, ImageError, PreprocessSpec, normalize, prepare_uint8
from edgemeta.runtime.images import MAX_IMAGE_PIXELS

SPEC = PreprocessSpec(size=(SIZE, SIZE))


@pytest.fixture
def model(tmp_path):
    return EmbeddingModel(linear_model(tmp_path / "m.onnx"))


def test_every_image_form_gives_the_same_input(tmp_path, model):
    img = class_image(3)
    path = tmp_path / "a.png"
    Image.fromarray(img).save(path)
    forms = [
        str(path),
        path,
        Image.fromarray(img),
        img,
        img[:, :, None],
        img / 255.0,
        [img],
        img[None],
        img[None, :, :, None],
        np.repeat(img[:, :, None], 3, axis=2),
    ]
    expected = model.embed(img)
    for form in forms:
        np.testing.assert_allclose(model.embed(form), expected, atol=1e-6, err_msg=type(form).__name__)


def test_unusual_modes_and_sizes_work(tmp_path, model):
    base = np.zeros((40, 30), np.uint8)
    base[10:20, 5:15] = 255
    cases = {
        "i16.png": Image.fromarray(base.astype(np.uint16) * 257),
        "pal.png": Image.fromarray(base).convert("P"),
        "rgba.png": Image.fromarray(np.dstack([base] * 3 + [np.full_like(base, 255)])),
        "cmyk.jpg": Image.fromarray(base).convert("CMYK"),
        "one.png": Image.fromarray(base > 0),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
        emb = model.embed(tmp_path / name)
        assert emb.shape == (1, SIZE * SIZE) and np.isfinite(emb).all(), name
        assert emb.max() > 0.3, name


def test_auto_polarity_inverts_dark_ink_on_light_paper():
    light = class_image(2)
    dark_on_light = 255 - light
    np.testing.assert_array_equal(prepare_uint8(dark_on_light, SPEC), prepare_uint8(light, SPEC))
    off = PreprocessSpec(size=(SIZE, SIZE), auto_polarity=False)
    np.testing.assert_array_equal(prepare_uint8(dark_on_light, off)[0, :, :, 0], dark_on_light)


def test_batch_polarity_is_per_image():
    batch = np.stack([class_image(1), 255 - class_image(1)])
    out = prepare_uint8(batch, SPEC)
    np.testing.assert_array_equal(out[0], out[1])


def test_normalize_layout_and_values():
    spec = PreprocessSpec(size=(SIZE, SIZE), channels=3, polarity="none", mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    rgb = np.random.default_rng(0).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    x = normalize(prepare_uint8(rgb, spec), spec)
    assert x.shape == (2, 3, SIZE, SIZE) and x.dtype == np.float32
    expected = (rgb.transpose(0, 3, 1, 2) / 255.0 - np.array([0.5, 0.4, 0.3])[:, None, None]) / np.array(
        [0.2, 0.25, 0.5]
    )[:, None, None]
    np.testing.assert_allclose(x, expected, atol=1e-5)


def test_rgb_fast_path_matches_pil_gray():
    rgb = np.random.default_rng(1).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8)
    off = PreprocessSpec(size=(SIZE, SIZE), auto_polarity=False)
    fast = prepare_uint8(rgb, off)
    slow = np.stack([np.asarray(Image.fromarray(im).convert("L")) for im in rgb])[..., None]
    np.testing.assert_array_equal(fast, slow)


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.full((SIZE, SIZE), np.nan, np.float32), "NaN or inf"),
        (np.full((SIZE, SIZE), np.inf, np.float64), "NaN or inf"),
        (np.zeros((2, 2, SIZE, SIZE, 1), np.uint8), "shape"),
        (np.zeros((SIZE,), np.uint8), "shape"),
        (np.full((SIZE, SIZE), 2.0), "0..1"),
        (np.zeros((0, SIZE, SIZE), np.uint8), "no images"),
        ([], "no images"),
        (42, "unsupported"),
    ],
)
def test_bad_arrays_refused(model, bad, message):
    with pytest.raises(ImageError, match=message):
        model.embed(bad)


def test_bad_files_refused(tmp_path, model):
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello, not an image")
    Image.fromarray(class_image(0)).resize((64, 64)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    cases = {"missing.png": "not found", "empty.png": "empty", "text.png": "not an image", "trunc.png": "cannot decode"}
    for name, message in cases.items():
        with pytest.raises(ImageError, match=message):
            model.embed(tmp_path / name)


def test_decompression_bomb_refused_before_decoding(tmp_path, model):
    bomb = tmp_path / "bomb.png"
    write_png_header_only(bomb, 100_000, 100_000)
    assert 100_000 * 100_000 > MAX_IMAGE_PIXELS
    with pytest.raises(ImageError, match="over the limit|decompression bomb"):
        model.embed(bomb)


def write_png_header_only(path, width: int, height: int) -> None:
    """A PNG that declares a huge size but carries almost no data."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b"")
    )
