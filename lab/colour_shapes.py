"""A generated colour data set where colour is the cue: class = (colour, shape), numpy + Pillow only.

Each image is one saturated shape (its shade jittered) at a random size, position and rotation on
a varied low-saturation background (noise, a gradient, stripes or a checkerboard), the image
itself 32x32 up to 640x480, saved as PNG or JPEG. The split holds out two colour-shape pairings
per colour (colour i with shapes i and i+1), so the held-out classes are combinations never seen
in training, and among them are pairs that differ only in colour (e.g. red and orange squares)
and pairs that differ only in shape. ``python -m edgemeta.lab.colour_shapes OUT`` writes one.
"""

from __future__ import annotations

import colorsys
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": 0.0, "orange": 30.0, "yellow": 58.0, "green": 125.0, "blue": 225.0, "purple": 285.0}  # hue, deg
SHAPES = ("circle", "square", "triangle", "star", "cross", "ring", "crescent", "arrow")


def split_classes(colours: list[str], shapes: list[str]) -> tuple[list[str], list[str]]:
    """(training class names, held-out class names), each ``colour_shape``: colour i is held out
    with shapes i and i+1 (mod the number of shapes)."""
    held = {(c, shapes[(i + d) % len(shapes)]) for i, c in enumerate(colours) for d in (0, 1)}
    train = [f"{c}_{s}" for c in colours for s in shapes if (c, s) not in held]
    return train, [f"{c}_{s}" for c in colours for s in shapes if (c, s) in held]


def _rgb(hue: float, sat: float, val: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb((hue / 360.0) % 1.0, sat, val)) * 255.0


def background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """float [h, w, 3] in 0..255: noise, a gradient or a texture in two low-saturation colours."""
    a, b = (_rgb(rng.uniform(0, 360), rng.uniform(0, 0.25), rng.uniform(0.15, 0.95)) for _ in range(2))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    angle = rng.uniform(0, np.pi)
    along = xx * np.cos(angle) + yy * np.sin(angle)
    kind = rng.integers(4)
    if kind == 0:  # noise
        return a + rng.normal(0, rng.uniform(8, 30), (h, w, 1))
    if kind == 1:  # gradient
        t = (along - along.min()) / max(float(np.ptp(along)), 1.0)
        return a + (b - a) * t[..., None]
    period = rng.uniform(4, max(6.0, min(w, h) / 4))
    if kind == 2:  # stripes
        t = (np.floor(along / period) % 2)[..., None]
    else:  # checkerboard
        t = ((np.floor(xx / period) + np.floor(yy / period)) % 2)[..., None]
    return a + (b - a) * t


def shape_mask(shape: str, side: int) -> Image.Image:
    """An 'L' mask [side, side] of ``shape`` (255 inside), upright, filling most of the square."""
    m = Image.new("L", (side, side), 0)
    d = ImageDraw.Draw(m)
    c, r = side / 2, side * 0.45
    if shape == "circle":
        d.ellipse([c - r, c - r, c + r, c + r], fill=255)
    elif shape == "square":
        d.rectangle([c - r * 0.8, c - r * 0.8, c + r * 0.8, c + r * 0.8], fill=255)
    elif shape == "triangle":
        d.polygon([(c, c - r), (c + r * 0.95, c + r * 0.7), (c - r * 0.95, c + r * 0.7)], fill=255)
    elif shape == "star":
        radii = [r if i % 2 == 0 else r * 0.42 for i in range(10)]
        d.polygon(
            [(c + q * np.sin(i * np.pi / 5), c - q * np.cos(i * np.pi / 5)) for i, q in enumerate(radii)], fill=255
        )
    elif shape == "cross":
        t = r * 0.3
        d.rectangle([c - t, c - r, c + t, c + r], fill=255)
        d.rectangle([c - r, c - t, c + r, c + t], fill=255)
    elif shape == "ring":
        d.ellipse([c - r, c - r, c + r, c + r], fill=255)
        d.ellipse([c - r * 0.55, c - r * 0.55, c + r * 0.55, c + r * 0.55], fill=0)
    elif shape == "crescent":
        d.ellipse([c - r, c - r, c + r, c + r], fill=255)
        d.ellipse([c - r * 0.45, c - r * 1.05, c + r * 1.35, c + r * 0.75], fill=0)
    elif shape == "arrow":
        t = r * 0.25
        d.rectangle([c - r, c - t, c + r * 0.1, c + t], fill=255)
        d.polygon([(c + r, c), (c + r * 0.1, c - r * 0.7), (c + r * 0.1, c + r * 0.7)], fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}; one of {SHAPES}")
    return m


def render(colour: str, shape: str, rng: np.random.Generator, max_size: tuple[int, int] = (640, 480)) -> Image.Image:
    """One RGB image of a ``colour`` ``shape``: size 32x32 .. ``max_size`` (width, height)."""
    w = int(rng.integers(32, max_size[0] + 1))
    h = int(np.clip(w * rng.uniform(0.6, 1.4), 32, max_size[1]))
    img = Image.fromarray(np.clip(background(w, h, rng), 0, 255).astype(np.uint8))
    side = max(12, int(min(w, h) * rng.uniform(0.45, 0.8)))
    mask = shape_mask(shape, 4 * side).rotate(rng.uniform(0, 360), resample=Image.BICUBIC)
    mask = mask.resize((side, side), Image.BILINEAR)
    hue = COLOURS[colour] + rng.uniform(-6, 6)
    fill = tuple(int(v) for v in _rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.7, 1.0)))
    x, y = int(rng.integers(0, w - side + 1)), int(rng.integers(0, h - side + 1))
    img.paste(Image.new("RGB", (side, side), fill), (x, y), mask)
    return img


def write_colour_shapes(
    root: str | Path,
    per_class: int = 20,
    seed: int = 0,
    colours: list[str] | None = None,
    shapes: list[str] | None = None,
    max_size: tuple[int, int] = (640, 480),
) -> tuple[Path, Path]:
    """Write ``root/train/<colour>_<shape>/*`` and ``root/heldout/<colour>_<shape>/*`` (``per_class``
    images each, a quarter of them JPEG); returns the two class-per-folder trees."""
    colours = list(colours or COLOURS)
    shapes = list(shapes or SHAPES)
    train, held = split_classes(colours, shapes)
    rng = np.random.default_rng(seed)
    root = Path(root)
    for part, names in (("train", train), ("heldout", held)):
        for name in names:
            folder = root / part / name
            folder.mkdir(parents=True, exist_ok=True)
            colour, shape = name.split("_", 1)
            for i in range(per_class):
                img = render(colour, shape, rng, max_size)
                if i % 4 == 3:
                    img.save(folder / f"{i:03d}.jpg", quality=90)
                else:
                    img.save(folder / f"{i:03d}.png")
    return root / "train", root / "heldout"


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: python -m edgemeta.lab.colour_shapes OUT [PER_CLASS]")
    paths = write_colour_shapes(sys.argv[1], int(sys.argv[2]) if len(sys.argv) == 3 else 20)
    print(*paths)
