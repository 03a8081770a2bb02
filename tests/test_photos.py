"""Photo handling (#24 item 2): EXIF orientation, the aspect policies, big JPEGs and the pixel limit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgemeta.runtime import ImageError, ModelError, PreprocessSpec, prepare_uint8
from edgemeta.runtime.aspect import crop_box, fit_size
from edgemeta.runtime.images import DRAFT_FACTOR, MAX_PIXELS_ENV, open_image, set_max_image_pixels, to_uint8_images

EXAMPLES = Path(__file__).resolve().parents[1] / "models" / "examples"
RGB = {"channels": 3, "polarity": "none", "mean": (0.5,) * 3, "std": (0.25,) * 3}


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    monkeypatch.delenv(MAX_PIXELS_ENV, raising=False)
    yield
    set_max_image_pixels(None)


def scene(h: int, w: int) -> np.ndarray:
    """uint8 [h, w, 3]: a smooth, asymmetric picture (a bar along the top, a block at the left)."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.stack([40 + 150 * xx / w, 60 + 120 * yy / h, np.full((h, w), 90.0)], axis=-1)
    img[: h // 5, :] = (250, 240, 30)
    img[h // 3 : h // 2, : w // 4] = (20, 30, 220)
    return img.astype(np.uint8)


def save_jpeg(path: Path, pixels: np.ndarray, orientation: int | None = None) -> Path:
    img = Image.fromarray(pixels)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    img.save(path, quality=95, exif=exif.tobytes())
    return path


def test_exif_rotated_jpeg_is_turned_upright(tmp_path):
    upright = scene(96, 64)
    # A phone held upright stores the sensor's landscape pixels and orientation 6 (turn 90° clockwise).
    stored = np.ascontiguousarray(np.rot90(upright, 1))
    rotated = save_jpeg(tmp_path / "rotated.jpg", stored, orientation=6)
    plain = save_jpeg(tmp_path / "upright.jpg", upright)
    decoded_upright = np.ascontiguousarray(np.rot90(np.asarray(Image.open(rotated).convert("RGB")), -1))
    for aspect in ("stretch", "center_crop", "letterbox"):
        spec = PreprocessSpec(size=(24, 24), aspect=aspect, **RGB)
        got = prepare_uint8(str(rotated), spec)
        np.testing.assert_array_equal(got, prepare_uint8(decoded_upright, spec))
        np.testing.assert_array_equal(got, prepare_uint8(Image.open(rotated), spec))  # a PIL image too
        # Against the upright file only JPEG noise differs; the sideways pixels differ by far more.
        near = np.abs(got.astype(int) - prepare_uint8(str(plain), spec)).mean()
        sideways = np.abs(got.astype(int) - prepare_uint8(np.ascontiguousarray(stored), spec)).mean()
        assert near < 4 < sideways, (aspect, near, sideways)


def disk_image(h: int, w: int, radius: int) -> np.ndarray:
    """uint8 [h, w]: a bright filled circle in the middle of a dark background."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.where((yy - h / 2 + 0.5) ** 2 + (xx - w / 2 + 0.5) ** 2 <= radius**2, 255, 0).astype(np.uint8)


def extent(img: np.ndarray) -> tuple[float, float]:
    """(height, width) of the bright shape in a uint8 [H, W] image: its mass spread along each axis."""
    mass = img.astype(np.float64) / 255.0
    rows, cols = mass.sum(axis=1), mass.sum(axis=0)
    spread = [
        np.sqrt((p * (np.arange(p.size) - (p * np.arange(p.size)).sum() / p.sum()) ** 2).sum() / p.sum())
        for p in (rows, cols)
    ]
    return spread[0], spread[1]


@pytest.mark.parametrize("h, w", [(60, 150), (150, 60), (41, 97)])
def test_circles_stay_circles(h, w):
    disk = disk_image(h, w, min(h, w) // 3)  # clear of the edges, so that the letterbox fill stays dark
    ratios = {}
    for aspect in ("stretch", "center_crop", "letterbox"):
        out = prepare_uint8(disk, PreprocessSpec(size=(28, 28), aspect=aspect))[0, :, :, 0]
        dy, dx = extent(out)
        ratios[aspect] = dx / dy
    assert abs(np.log(ratios["stretch"] / (h / w))) < 0.1, ratios  # stretched: squashed as the image is
    for aspect in ("center_crop", "letterbox"):
        assert abs(np.log(ratios[aspect])) < 0.1, (aspect, ratios)


def test_every_input_form_fits_alike(tmp_path):
    img = scene(50, 130)
    Image.fromarray(img).save(tmp_path / "a.png")
    for aspect in ("center_crop", "letterbox"):
        spec = PreprocessSpec(size=(20, 16), aspect=aspect, **RGB)
        want = prepare_uint8(img, spec)
        for form in (str(tmp_path / "a.png"), Image.fromarray(img), [img], img[None]):
            np.testing.assert_array_equal(prepare_uint8(form, spec), want)


def test_center_crop_keeps_the_middle():
    img = scene(40, 120)
    left, top, right, bottom = crop_box(120, 40, (20, 20))
    assert (right - left, bottom - top) == (40, 40) and left == 40
    spec = PreprocessSpec(size=(20, 20), aspect="center_crop", **RGB)
    np.testing.assert_array_equal(
        prepare_uint8(img, spec), prepare_uint8(img[:, 40:80], PreprocessSpec(size=(20, 20), **RGB))
    )


@pytest.mark.parametrize(
    "w, h, size", [(120, 40, (20, 20)), (33, 100, (28, 28)), (50, 50, (10, 30)), (9, 1000, (28, 28))]
)
def test_fit_size_keeps_the_aspect(w, h, size):
    nw, nh = fit_size(w, h, size)
    assert nw == size[1] or nh == size[0]
    assert 1 <= nw <= size[1] and 1 <= nh <= size[0]
    exact_w, exact_h = (size[1], size[1] * h / w) if nw == size[1] else (size[0] * w / h, size[0])
    assert abs(nw - max(exact_w, 1)) <= 0.5 and abs(nh - max(exact_h, 1)) <= 0.5  # rounded, at least one pixel


def test_letterbox_pads_with_the_border_level():
    light = np.full((30, 90), 235, dtype=np.uint8)
    light[10:20, 30:60] = 10
    spec = PreprocessSpec(size=(28, 28), aspect="letterbox", polarity="dark_on_light")
    out = prepare_uint8(light, spec)[0, :, :, 0]
    assert (out[:5] == 235).all() and (out[-5:] == 235).all()
    photo = scene(40, 100)
    photo[0, :], photo[-1, :], photo[:, 0], photo[:, -1] = (10, 200, 30), (10, 200, 30), (10, 200, 30), (10, 200, 30)
    out = prepare_uint8(photo, PreprocessSpec(size=(16, 16), aspect="letterbox", **RGB))[0]
    fitted = prepare_uint8(photo, PreprocessSpec(size=(6, 16), **RGB))[0]  # what the 100x40 photo scales to
    ring = np.concatenate([fitted[0], fitted[-1], fitted[1:-1, 0], fitted[1:-1, -1]]).astype(np.int64)
    fill = (2 * ring.sum(axis=0) + len(ring)) // (2 * len(ring))
    np.testing.assert_array_equal(out[:5].reshape(-1, 3), np.broadcast_to(fill, (80, 3)))
    np.testing.assert_array_equal(out[5:11], fitted)


def test_aspect_in_the_metadata():
    spec = PreprocessSpec(size=(32, 32), aspect="letterbox", **RGB)
    assert spec.to_dict()["aspect"] == "letterbox" and PreprocessSpec.from_dict(spec.to_dict()) == spec
    old = {k: v for k, v in PreprocessSpec().to_dict().items() if k != "aspect"}
    assert PreprocessSpec.from_dict(old).aspect == "stretch"
    with pytest.raises(ModelError, match="unknown aspect policy"):
        PreprocessSpec.from_dict({**old, "aspect": "squash"})


def today(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """What the runtime gave for a plain PNG before aspect policies: PIL decode, convert, resize."""
    img = Image.open(path).convert("L" if channels == 1 else "RGB")
    if img.size != (size[1], size[0]):
        img = img.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    return np.asarray(img).reshape(size[0], size[1], channels)


def test_stretch_is_unchanged_for_the_shipped_examples(tmp_path):
    files = sorted(EXAMPLES.rglob("*.png"))
    assert len(files) >= 20
    Image.fromarray(scene(37, 90)).save(tmp_path / "wide.png")
    save_jpeg(tmp_path / "small.jpg", scene(100, 70))  # under DRAFT_FACTOR x 2 per side: never reduced
    files += [tmp_path / "wide.png", tmp_path / "small.jpg"]
    for size, channels in (((28, 28), 1), ((20, 20), 1), ((32, 24), 3)):
        got = to_uint8_images([str(p) for p in files], size, channels, "bilinear")
        for i, p in enumerate(files):
            np.testing.assert_array_equal(got[i], today(p, size, channels), err_msg=str(p))


def test_big_jpeg_is_decoded_reduced(tmp_path):
    path = save_jpeg(tmp_path / "big.jpg", scene(1200, 1600))
    spec = PreprocessSpec(size=(28, 28), **RGB)
    assert open_image(path, DRAFT_FACTOR * 28).size == (200, 150)  # 1/8: the shorter side still >= 56
    assert open_image(path, DRAFT_FACTOR * 224).size == (800, 600)  # 1/2 for a 224-pixel model
    assert open_image(path).size == (1600, 1200)
    first = prepare_uint8(str(path), spec)
    np.testing.assert_array_equal(first, prepare_uint8(str(path), spec))  # deterministic
    full = prepare_uint8(np.asarray(Image.open(path)), spec)  # the full decode, resized
    assert np.abs(first.astype(int) - full).mean() < 3


def test_pixel_limit_counts_decoded_pixels_and_can_be_raised(tmp_path, monkeypatch):
    png = tmp_path / "a.png"
    Image.fromarray(scene(100, 100)).save(png)
    jpeg = save_jpeg(tmp_path / "a.jpg", scene(600, 800))
    spec = PreprocessSpec(size=(28, 28), **RGB)
    set_max_image_pixels(5000)
    with pytest.raises(ImageError, match=f"over the limit of 5000: .*a.png \\(set {MAX_PIXELS_ENV} to raise it\\)"):
        prepare_uint8(str(png), spec)
    with pytest.raises(ImageError, match="over the limit of 5000"):
        prepare_uint8(scene(100, 100), spec)
    set_max_image_pixels(8000)
    prepare_uint8(str(jpeg), spec)  # 800x600 decodes at 1/8 (100x75), under the limit
    set_max_image_pixels(None)
    monkeypatch.setenv(MAX_PIXELS_ENV, "5000")
    with pytest.raises(ImageError, match="over the limit of 5000"):
        prepare_uint8(str(png), spec)
    monkeypatch.setenv(MAX_PIXELS_ENV, "10000")
    assert prepare_uint8(str(png), spec).shape == (1, 28, 28, 3)
    monkeypatch.setenv(MAX_PIXELS_ENV, "lots")
    with pytest.raises(ImageError, match=f"{MAX_PIXELS_ENV} must be a positive whole number"):
        prepare_uint8(str(png), spec)
    for bad in (0, -5, 2.5, True):
        with pytest.raises(ImageError, match="pixel limit must be a positive integer"):
            set_max_image_pixels(bad)


PEAK_RSS = """
import sys
from edgemeta.runtime import PreprocessSpec, prepare_uint8
out = prepare_uint8(sys.argv[1], PreprocessSpec(size=(28, 28)))
# VmHWM: this process's peak resident memory (ru_maxrss would carry the parent's over exec).
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(out.shape, peak_kb // 1024)
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="peak memory is read from /proc (Linux)")
def test_64_megapixel_jpeg_is_accepted_in_little_memory(tmp_path):
    # 9248x6936 = 64.1 Mpixel, over the default limit of 64 M unless decoded reduced.
    tile = Image.fromarray(scene(867, 1156))
    path = tmp_path / "phone.jpg"
    tile.resize((9248, 6936), Image.Resampling.NEAREST).save(path, quality=90)
    res = subprocess.run([sys.executable, "-c", PEAK_RSS, str(path)], capture_output=True, text=True, check=True)
    assert res.stdout.startswith("(1, 28, 28, 1)"), res.stdout
    assert int(res.stdout.split()[-1]) < 300, res.stdout  # peak MB; a full RGB decode alone is 192 MB


def test_a_model_file_carries_its_aspect(tmp_path):
    from click.testing import CliRunner
    from tiny_models import SIZE, linear_model, metadata

    from edgemeta.cli import main
    from edgemeta.runtime import EmbeddingModel

    meta = metadata(SIZE * SIZE)
    meta["preprocess"]["aspect"] = "center_crop"
    path = linear_model(tmp_path / "m.onnx", meta=meta)
    res = CliRunner().invoke(main, ["info", str(path), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["preprocess"]["aspect"] == "center_crop"
    wide = disk_image(20, 60, 8)
    model = EmbeddingModel(path)
    np.testing.assert_array_equal(model.prepare(wide), prepare_uint8(wide[:, 20:40], model.meta.preprocess))


def test_training_data_is_fitted_as_the_runtime_fits_it(tmp_path):
    from edgemeta.lab.datasets import load_source

    files = []
    for k, (h, w) in enumerate([(60, 150), (150, 60), (90, 90)]):
        (tmp_path / f"c{k}").mkdir()
        files.append(save_jpeg(tmp_path / f"c{k}" / "0.jpg", scene(h, w), orientation=6 if k == 0 else None))
    for aspect in ("center_crop", "letterbox"):
        spec = PreprocessSpec(size=(24, 24), aspect=aspect, **RGB)
        data = load_source(tmp_path, spec)
        np.testing.assert_array_equal(data.images, prepare_uint8([str(f) for f in files], spec))
