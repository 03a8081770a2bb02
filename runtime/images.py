"""Turn every accepted image form into a uint8 [N, H, W, C] batch at a given size.

Accepted: a path, a ``PIL.Image``, a 2-D (H, W) or 3-D (H, W, C) array, a sequence of
those, or a batch array (N, H, W) / (N, H, W, C); uint8 0..255, float 0..1, bool, or
16-bit integers. Arrays already at the target size and channel count take a vectorized
path with no per-image Python work; everything else goes through PIL, one image at a time.
Pillow is imported only then: an application that passes arrays at the model's size never loads it.

Files and PIL images are turned upright by their EXIF orientation first. A JPEG file is decoded at the
largest of libjpeg's 1/2, 1/4, 1/8 reductions that keeps both sides at least ``DRAFT_FACTOR`` times
the model's longer side (``Image.draft``): a 64-megapixel photo decodes in a fraction of the time and
memory, and the result is deterministic, the same for training and the runtime (both come here).
Then the aspect policy (``aspect.ASPECTS``) fits the image to the model's size.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .aspect import crop_box, fit_size, letterbox
from .errors import ImageError

if TYPE_CHECKING:
    from PIL import Image

# Resize methods: the names of PIL's ``Image.Resampling`` filters, lower case.
RESIZE_FILTERS = ("nearest", "box", "bilinear", "hamming", "bicubic", "lanczos")

# Refused before decoding: a file that would decode to more pixels than this is a decompression
# bomb or far larger than any few-shot input needs. A JPEG counts at its reduced decoding size.
# Raised per process with EDGEMETA_MAX_IMAGE_PIXELS or set_max_image_pixels().
MAX_IMAGE_PIXELS = 64_000_000
MAX_PIXELS_ENV = "EDGEMETA_MAX_IMAGE_PIXELS"
_max_pixels_override: int | None = None
# A JPEG is reduced while decoding only as far as keeps this many times the model's pixels per side,
# so the resize filter still averages over real detail.
DRAFT_FACTOR = 2
MAX_IMAGE_FILE_BYTES = 256 * 1024 * 1024
# Below this on a side an input holds too little to recognize; upscaling it to the model's size
# would only invent pixels, so it is refused rather than silently blurred into a guess.
MIN_IMAGE_SIDE = 8
# File suffixes taken for images where a folder stands for the images inside it (the CLI, data sets).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"})
_CHANNEL_AXIS_SIZES = (1, 3, 4)


def set_max_image_pixels(pixels: int | None) -> None:
    """Set this process's pixel limit (over ``EDGEMETA_MAX_IMAGE_PIXELS``); None goes back to the
    variable, or to ``MAX_IMAGE_PIXELS`` without it."""
    global _max_pixels_override
    if pixels is not None and (isinstance(pixels, bool) or not isinstance(pixels, int) or pixels < 1):
        raise ImageError(f"the image pixel limit must be a positive integer, got {pixels!r}")
    _max_pixels_override = pixels


def max_image_pixels() -> int:
    """The pixel limit in force: ``set_max_image_pixels``, else ``EDGEMETA_MAX_IMAGE_PIXELS``, else the default."""
    if _max_pixels_override is not None:
        return _max_pixels_override
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return MAX_IMAGE_PIXELS
    if not raw.isdigit() or int(raw) < 1:
        raise ImageError(f"{MAX_PIXELS_ENV} must be a positive whole number of pixels, got {raw!r}")
    return int(raw)


def _over_limit(w: int, h: int, limit: int, where: str) -> ImageError:
    return ImageError(
        f"image declares {w}x{h} pixels, over the limit of {limit}{where} (set {MAX_PIXELS_ENV} to raise it)"
    )


def to_uint8_images(
    images: Any, size: tuple[int, int], channels: int, resize: str, aspect: str = "stretch"
) -> np.ndarray:
    """Convert ``images`` to uint8 [N, size[0], size[1], channels], fitted by ``aspect`` (one of ``ASPECTS``)."""
    if isinstance(images, np.ndarray):
        return _from_array(images, size, channels, resize, aspect)
    if isinstance(images, (str, os.PathLike)) or _is_pil_image(images):
        return _single(images, size, channels, resize, aspect)[None]
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ImageError("no images given")
        out = np.empty((len(images), size[0], size[1], channels), dtype=np.uint8)
        for i, item in enumerate(images):
            out[i] = _single(item, size, channels, resize, aspect)
        return out
    raise ImageError(f"unsupported image type {type(images).__name__}")


def _single(item: Any, size: tuple[int, int], channels: int, resize: str, aspect: str) -> np.ndarray:
    if isinstance(item, (str, os.PathLike)):
        return _pil_to_array(open_image(item, DRAFT_FACTOR * max(size)), size, channels, resize, aspect)
    if _is_pil_image(item):
        return _pil_to_array(upright(item), size, channels, resize, aspect)
    if isinstance(item, np.ndarray):
        if item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in _CHANNEL_AXIS_SIZES):
            raise ImageError(f"an image array in a sequence must be (H, W) or (H, W, C), got shape {item.shape}")
        return _from_array(item, size, channels, resize, aspect)[0]
    raise ImageError(f"unsupported image type {type(item).__name__}")


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned by its EXIF orientation tag (itself when it has none or the tag cannot be read)."""
    try:
        with warnings.catch_warnings():  # a corrupt EXIF block only means no orientation to apply
            warnings.simplefilter("ignore")
            orientation = img.getexif().get(0x0112, 1)  # 0x0112: the EXIF Orientation tag
    except (OSError, ValueError, SyntaxError):
        return img
    if orientation not in range(2, 9):
        return img
    from PIL import ImageOps

    return ImageOps.exif_transpose(img)


def _is_pil_image(item: Any) -> bool:
    pil = sys.modules.get("PIL.Image")  # a PIL image exists only once PIL has been imported
    return pil is not None and isinstance(item, pil.Image)


def open_image(path: str | os.PathLike, min_side: int | None = None) -> Image.Image:
    """Open and fully decode an image file, refusing bombs before decoding, upright by its EXIF tag.

    ``min_side``: a JPEG is decoded at the strongest 1/2, 1/4, 1/8 reduction that keeps its shorter
    side at least this many pixels (``Image.draft``, same mode, so colour conversion is unchanged)."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image not found: {p}")
    nbytes = p.stat().st_size
    if nbytes == 0:
        raise ImageError(f"empty file (0 bytes): {p}")
    if nbytes > MAX_IMAGE_FILE_BYTES:
        raise ImageError(f"image file too large ({nbytes} bytes): {p}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(p)
            w, h = img.size
            if min_side and img.format == "JPEG":
                img.draft(img.mode, (min_side, min_side))
            limit = max_image_pixels()
            if img.size[0] * img.size[1] > limit or w < 1 or h < 1:
                raise _over_limit(w, h, limit, f": {p}")
            check_image_size(w, h, p)
            img.load()
            turned = upright(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"not an image file: {p}") from None
    except Image.DecompressionBombError:
        raise ImageError(f"image refused as a decompression bomb: {p}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as e:
        raise ImageError(f"cannot decode image {p}: {e}") from None
    return turned


def _pil_mode_to_uint8(img: Image.Image, channels: int) -> Image.Image:
    """Any PIL mode -> 'L' or 'RGB'. Transparency is composited onto white."""
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or arr.max(initial=0) > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba).convert("RGB")
    target = "L" if channels == 1 else "RGB"
    return img if img.mode == target else img.convert(target)


def check_image_size(width: int, height: int, name: object = None) -> None:
    """ImageError when an input image is under ``MIN_IMAGE_SIDE`` pixels on a side (before any resizing)."""
    if min(width, height) < MIN_IMAGE_SIDE:
        where = f": {name}" if name is not None else ""
        raise ImageError(f"image is {width}x{height} pixels, under the minimum of {MIN_IMAGE_SIDE} on a side{where}")


def _pil_to_array(img: Image.Image, size: tuple[int, int], channels: int, resize: str, aspect: str) -> np.ndarray:
    """A PIL image -> uint8 [size[0], size[1], channels]: mode, then the aspect policy, then the resize."""
    from PIL import Image

    w, h = img.size
    limit = max_image_pixels()
    if w * h > limit:
        raise _over_limit(w, h, limit, "")
    check_image_size(w, h, getattr(img, "filename", "") or "a PIL image")
    filt = Image.Resampling[resize.upper()]
    try:
        img = _pil_mode_to_uint8(img, channels)
        if aspect == "center_crop":
            img = img.crop(crop_box(w, h, size))
        elif aspect == "letterbox":
            nw, nh = fit_size(w, h, size)
            fitted = img.resize((nw, nh), filt) if img.size != (nw, nh) else img
            return letterbox(np.asarray(fitted, dtype=np.uint8).reshape(nh, nw, channels), size)
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), filt)
    except (OSError, ValueError) as e:
        raise ImageError(f"cannot convert image: {e}") from None
    arr = np.asarray(img, dtype=np.uint8)
    return arr.reshape(size[0], size[1], channels)


def _array_to_uint8(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8) * np.uint8(255)
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)):
            raise ImageError("image array contains NaN or inf")
        if arr.size and (arr.min() < 0.0 or arr.max() > 1.0):
            raise ImageError("float image arrays must hold values in 0..1")
        return (arr * 255.0 + 0.5).astype(np.uint8)
    if np.issubdtype(arr.dtype, np.integer):
        if arr.size and arr.min() < 0:
            raise ImageError("integer image arrays must not hold negative values")
        top = 255 if arr.size == 0 or arr.max() <= 255 else 65535
        if arr.size and arr.max() > 65535:
            raise ImageError("integer image arrays must hold values in 0..255 or 0..65535")
        return (arr.astype(np.float64) * (255.0 / top) + 0.5).astype(np.uint8)
    raise ImageError(f"unsupported image array dtype {arr.dtype}")


def _as_nhwc(arr: np.ndarray) -> np.ndarray:
    if arr.ndim == 2:
        return arr[None, :, :, None]
    if arr.ndim == 3:
        if arr.shape[2] in _CHANNEL_AXIS_SIZES and arr.shape[0] > 4:
            return arr[None]
        return arr[..., None]
    if arr.ndim == 4 and arr.shape[3] in _CHANNEL_AXIS_SIZES:
        return arr
    raise ImageError(
        f"image array of shape {arr.shape}: expected (H, W), (H, W, C), (N, H, W) or (N, H, W, C) with C in 1, 3, 4"
    )


def _from_array(arr: np.ndarray, size: tuple[int, int], channels: int, resize: str, aspect: str) -> np.ndarray:
    batch = _as_nhwc(arr)
    if batch.shape[0] == 0:
        raise ImageError("no images given (empty batch)")
    if min(batch.shape[1], batch.shape[2]) < 1:
        raise ImageError(f"image array of shape {arr.shape} has no pixels")
    if batch.shape[1:3] != tuple(size):  # an array at the model's own size is what the model takes
        check_image_size(batch.shape[2], batch.shape[1], f"an array of shape {arr.shape}")
    batch = _array_to_uint8(batch)
    if batch.shape[1:3] == tuple(size) and batch.shape[3] == channels:
        return batch
    if batch.shape[1:3] == tuple(size) and channels == 1 and batch.shape[3] == 3:
        return _rgb_to_gray(batch)
    from PIL import Image

    mode = {1: "L", 3: "RGB", 4: "RGBA"}[batch.shape[3]]
    out = np.empty((batch.shape[0], size[0], size[1], channels), dtype=np.uint8)
    for i in range(batch.shape[0]):
        img = Image.fromarray(batch[i, :, :, 0] if mode == "L" else batch[i], mode)
        out[i] = _pil_to_array(img, size, channels, resize, aspect)
    return out


def _rgb_to_gray(batch: np.ndarray) -> np.ndarray:
    """uint8 [N, H, W, 3] -> [N, H, W, 1], bit-identical to PIL's convert('L')."""
    rgb = batch.astype(np.uint32)
    gray = (rgb[..., 0] * 19595 + rgb[..., 1] * 38470 + rgb[..., 2] * 7471 + 0x8000) >> 16
    return gray.astype(np.uint8)[..., None]
