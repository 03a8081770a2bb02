"""The one definition of preprocessing, shared by training and the runtime.

Every image takes the same two steps, whichever side it is on:

1. ``prepare_uint8``: decode / convert mode / resize / fix polarity, giving a canonical
   ``uint8 [N, H, W, C]`` batch. Training runs this once over its data set; the runtime
   runs it on every request (with a vectorized fast path for arrays already at size).
2. ``normalize``: ``uint8 [N, H, W, C] -> float32 [N, C, H, W]`` with
   ``(x / 255 - mean) / std``. Training does the same arithmetic on its device with
   ``normalize_constants`` (checked against this function by a test).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from .aspect import ASPECTS
from .errors import ModelError
from .images import MAX_IMAGE_PIXELS, RESIZE_FILTERS, to_uint8_images

POLARITIES = ("light_on_dark", "dark_on_light", "none")


@dataclass(frozen=True)
class PreprocessSpec:
    """What a model expects as input.

    size: (height, width) of the model input.
    channels: 1 (grayscale) or 3 (RGB).
    resize: a PIL filter name (see ``RESIZE_FILTERS``).
    polarity: ``light_on_dark`` (bright ink on a dark background, like MNIST),
        ``dark_on_light`` (like Omniglot scans) or ``none`` (natural RGB images).
    auto_polarity: per image, look at the border to find the background and invert the
        image when its polarity is the opposite of ``polarity``.
    mean, std: per-channel normalization applied after scaling to 0..1.
    aspect: how an image whose aspect ratio differs from ``size`` is fitted (see ``ASPECTS``):
        ``stretch`` (resize to ``size``, as every model before this field), ``center_crop`` (the
        largest centered crop of the model's aspect) or ``letterbox`` (scale to fit, pad with the
        per-channel mean of the scaled image's one-pixel border). Files without it read as ``stretch``.
    """

    size: tuple[int, int] = (28, 28)
    channels: int = 1
    resize: str = "bilinear"
    polarity: str = "light_on_dark"
    auto_polarity: bool = True
    mean: tuple[float, ...] = field(default=(0.0,))
    std: tuple[float, ...] = field(default=(1.0,))
    aspect: str = "stretch"

    def __post_init__(self) -> None:
        if len(self.size) != 2 or min(self.size) < 1:
            raise ModelError(f"preprocess size must be two positive integers, got {self.size}")
        if self.size[0] * self.size[1] > MAX_IMAGE_PIXELS:
            raise ModelError(f"preprocess size {self.size} is over the limit of {MAX_IMAGE_PIXELS} pixels")
        if self.channels not in (1, 3):
            raise ModelError(f"preprocess channels must be 1 or 3, got {self.channels}")
        if self.resize not in RESIZE_FILTERS:
            raise ModelError(f"unknown resize method {self.resize!r}; one of {sorted(RESIZE_FILTERS)}")
        if self.polarity not in POLARITIES:
            raise ModelError(f"unknown polarity {self.polarity!r}; one of {POLARITIES}")
        if self.aspect not in ASPECTS:
            raise ModelError(f"unknown aspect policy {self.aspect!r}; one of {ASPECTS}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ModelError("preprocess mean and std need one value per channel")
        if any(not np.isfinite(s) or s <= 0 for s in self.std) or not np.all(np.isfinite(self.mean)):
            raise ModelError("preprocess std must be positive and mean finite")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["size"] = list(self.size)
        d["mean"] = list(self.mean)
        d["std"] = list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PreprocessSpec:
        try:
            return cls(
                size=tuple(int(v) for v in d["size"]),  # type: ignore[arg-type]  # __post_init__ checks it is two
                channels=int(d["channels"]),
                resize=str(d["resize"]),
                polarity=str(d["polarity"]),
                auto_polarity=bool(d.get("auto_polarity", True)),
                mean=tuple(float(v) for v in d["mean"]),
                std=tuple(float(v) for v in d["std"]),
                aspect=str(d.get("aspect", "stretch")),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise ModelError(f"invalid preprocess metadata: {e}") from None


def normalize_constants(spec: PreprocessSpec) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel ``scale``, ``offset`` (float32 [C]) with ``input = x_uint8 * scale + offset``."""
    std = np.asarray(spec.std, dtype=np.float64)
    mean = np.asarray(spec.mean, dtype=np.float64)
    return (1.0 / (255.0 * std)).astype(np.float32), (-mean / std).astype(np.float32)


_BORDER_CACHE: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]] = {}


def border_index(h: int, w: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The one-pixel border of an [H, W, C] image, cached per shape: flat indices (int [B])
    and a float32 [H*W*C] 0/1 mask whose dot product with a flat uint8 image is the exact
    integer border sum (at most 255 * B, far below float32's 2**24 exact-integer range)."""
    key = (h, w, c)
    cached = _BORDER_CACHE.get(key)
    if cached is None:
        mask = np.zeros((h, w, c), dtype=bool)
        mask[0], mask[-1], mask[:, 0], mask[:, -1] = True, True, True, True
        cached = _BORDER_CACHE[key] = (np.flatnonzero(mask), mask.ravel().astype(np.float32))
    return cached


def fix_polarity(batch: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Invert the images of ``batch`` (uint8 [N, H, W, C]) whose background is the wrong way.

    The background is taken to be whatever the one-pixel border mostly is: bright when the
    border's mean is above mid-gray. Returns a new array only when something is inverted.
    """
    if spec.polarity == "none" or not spec.auto_polarity or batch.shape[0] == 0:
        return batch
    n, h, w, c = batch.shape
    idx, mask = border_index(h, w, c)
    want_dark_background = spec.polarity == "light_on_dark"
    if n == 1:  # the common request: one small matrix-vector product, no temporary arrays
        bright_background = float(np.dot(batch.reshape(-1), mask)) > 127.5 * idx.size
        return 255 - batch if bright_background == want_dark_background else batch
    border_sum = batch.reshape(n, -1).take(idx, axis=1).sum(axis=1, dtype=np.int64)
    bright_background = border_sum > 127.5 * idx.size
    wrong = bright_background if want_dark_background else ~bright_background
    if not wrong.any():
        return batch
    out = batch.copy()
    out[wrong] = 255 - batch[wrong]
    return out


def prepare_uint8(images: Any, spec: PreprocessSpec) -> np.ndarray:
    """Any accepted image form -> canonical uint8 [N, H, W, C] at the model's size and polarity."""
    batch = to_uint8_images(images, spec.size, spec.channels, spec.resize, spec.aspect)
    return fix_polarity(batch, spec)


MAX_SUPPORT_SHIFT = 3
# Pixel offsets (dy, dx) of an image's shifted views; an embedding over views is their mean.
Views = Sequence[tuple[int, int]]


def check_support_shift(radius: Any) -> int:
    """``radius`` if it is a valid support shift (an integer number of pixels), else ModelError."""
    if isinstance(radius, bool) or not isinstance(radius, (int, np.integer)) or not 0 <= radius <= MAX_SUPPORT_SHIFT:
        raise ModelError(f"support shift must be an integer 0..{MAX_SUPPORT_SHIFT} (pixels), got {radius!r}")
    return int(radius)


def shift_offsets(radius: int) -> list[tuple[int, int]]:
    """The (dy, dx) pixel offsets of the support views: a (2r+1) x (2r+1) grid, (0, 0) first."""
    grid = [(dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)]
    return sorted(grid, key=lambda o: o != (0, 0))


def shifted_views(batch: np.ndarray, radius: int) -> np.ndarray:
    """uint8 [N, H, W, C] -> uint8 [V, N, H, W, C]: each image moved by every offset of
    ``shift_offsets(radius)`` (V of them, the unshifted image first)."""
    return offset_views(batch, shift_offsets(check_support_shift(radius)))


def offset_views(batch: np.ndarray, offsets: list[tuple[int, int]]) -> np.ndarray:
    """uint8 [N, H, W, C] -> uint8 [V, N, H, W, C]: each image moved by each (dy, dx) of
    ``offsets``. Pixels moved in from outside repeat the edge, so the background stays background
    whatever the polarity."""
    r = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    n, h, w, c = batch.shape
    # Edge padding by hand: np.pad costs about 50 µs per call, most of a one-image query's views.
    padded = np.empty((n, h + 2 * r, w + 2 * r, c), dtype=batch.dtype)
    padded[:, r : r + h, r : r + w] = batch
    padded[:, :r, r : r + w] = batch[:, :1]
    padded[:, r + h :, r : r + w] = batch[:, -1:]
    padded[:, :, :r] = padded[:, :, r : r + 1]
    padded[:, :, r + w :] = padded[:, :, r + w - 1 : r + w]
    out = np.empty((len(offsets), n, h, w, c), dtype=batch.dtype)
    for i, (dy, dx) in enumerate(offsets):
        out[i] = padded[:, r - dy : r - dy + h, r - dx : r - dx + w]
    return out


# Query test-time augmentation: a query embedded as the mean over these 1-pixel shifts. Chosen on
# the default model's validation alphabets: 3 views (one diagonal pair) gain about as much as all
# 9 (benchmarks/validation_variants.py), at 3 network evaluations per query instead of 9.
QUERY_VIEW_OFFSETS: dict[int, list[tuple[int, int]]] = {
    1: [(0, 0)],
    3: [(0, 0), (-1, 1), (1, -1)],
    5: [(0, 0), (-1, -1), (-1, 1), (1, -1), (1, 1)],
    9: shift_offsets(1),
}


def check_query_views(views: Any) -> int:
    """``views`` if it is a supported number of query views (1, 3, 5 or 9), else ModelError."""
    if isinstance(views, bool) or not isinstance(views, (int, np.integer)) or int(views) not in QUERY_VIEW_OFFSETS:
        raise ModelError(f"query views must be one of {sorted(QUERY_VIEW_OFFSETS)}, got {views!r}")
    return int(views)


def query_offsets(views: int) -> list[tuple[int, int]]:
    """The (dy, dx) offsets of ``views`` query views (``EmbeddingModel.embed(images, views=...)``)."""
    return QUERY_VIEW_OFFSETS[check_query_views(views)]


def support_offsets(shift: int) -> list[tuple[int, int]]:
    """The (dy, dx) offsets of enrolled images' views at support shift ``shift`` (0: the image alone)."""
    return shift_offsets(check_support_shift(shift))


def normalize(batch: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """uint8 [N, H, W, C] -> float32 [N, C, H, W], ``(x / 255 - mean) / std``."""
    scale, offset = normalize_constants(spec)
    return _normalize_with(batch, scale, offset)


def _normalize_with(
    batch: np.ndarray, scale: np.ndarray, offset: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """``normalize`` with ready constants, into ``out`` (float32 [N, C, H, W]) when given."""
    n, h, w, c = batch.shape
    if c == 1:
        # scale and offset stay 1-element arrays: numpy's scalar operand path costs about twice
        # as much per call, which is most of this function's time at batch 1.
        out = np.multiply(batch.reshape(n, 1, h, w), scale, out=out, dtype=np.float32)
        if offset[0] != 0.0:
            out += offset
        return out
    nhwc = np.multiply(batch, scale, dtype=np.float32)
    nhwc += offset
    if out is None:
        return np.ascontiguousarray(nhwc.transpose(0, 3, 1, 2))
    out[...] = nhwc.transpose(0, 3, 1, 2)
    return out


class Normalizer:
    """``normalize`` for one spec, constants ready: uint8 [N, H, W, C] -> float32 [N, C, H, W].

    ``tables`` float32 [C, 256]: what ``normalize`` gives for each level of each channel (computed
    by it, so a lookup is bit-identical). Several channels are looked up, one channel at a time
    into its plane of the output, which also does the transpose: for 64 RGB images of 32x32,
    0.28 ms instead of 0.81 ms of arithmetic and a transposed copy (1 image: 7 vs 16 us). One
    channel keeps the arithmetic, faster than a lookup for a batch (21 vs 49 us at 64 x 28 x 28).
    """

    def __init__(self, spec: PreprocessSpec) -> None:
        self.scale, self.offset = normalize_constants(spec)
        levels = np.arange(256, dtype=np.uint8).reshape(1, 1, 256, 1).repeat(spec.channels, axis=3)
        self.tables = _normalize_with(levels, self.scale, self.offset).reshape(spec.channels, 256)

    def __call__(self, batch: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 [N, H, W, C] -> float32 [N, C, H, W], into ``out`` when given."""
        n, h, w, c = batch.shape
        if c == 1:
            return _normalize_with(batch, self.scale, self.offset, out=out)
        if out is None:
            out = np.empty((n, c, h, w), dtype=np.float32)
        for channel in range(c):
            self.tables[channel].take(batch[..., channel], out=out[:, channel], mode="clip")
        return out


class OneGrayImage:
    """The commonest request on its shortest path: one uint8 grayscale image already at the
    model's size, (H, W), (1, H, W), (H, W, 1) or (1, H, W, 1).

    Polarity and normalization fold into one table lookup: ``tables[0][v]`` is what ``normalize``
    gives for level ``v`` (computed by it, so bit-identical), and an image ``fix_polarity`` would
    invert reads ``tables[1][v] = tables[0][255 - v]``.
    """

    def __init__(self, spec: PreprocessSpec) -> None:
        h, w = spec.size
        gray = spec.channels == 1
        self.shapes = frozenset({(h, w), (1, h, w), (h, w, 1), (1, h, w, 1)}) if gray else frozenset()
        table = Normalizer(spec).tables[0]
        self.tables = (table, np.ascontiguousarray(table[::-1]))
        self.check_polarity = spec.polarity != "none" and spec.auto_polarity
        idx, self.border_mask = border_index(h, w, 1)
        self.bright_limit = 127.5 * idx.size
        self.want_dark_background = spec.polarity == "light_on_dark"

    def accepts(self, images: Any) -> bool:
        return type(images) is np.ndarray and images.dtype == np.uint8 and images.shape in self.shapes

    def normalize_into(self, image: np.ndarray, out: np.ndarray) -> None:
        """uint8 image (a shape in ``shapes``) -> ``out`` float32 [H*W], polarity fixed as
        ``fix_polarity`` fixes it and normalized as ``normalize`` normalizes."""
        flat = image.reshape(-1)
        invert = self.check_polarity and (
            (float(np.dot(flat, self.border_mask)) > self.bright_limit) == self.want_dark_background
        )
        self.tables[invert].take(flat, out=out, mode="clip")  # the method skips np.take's Python wrapper
