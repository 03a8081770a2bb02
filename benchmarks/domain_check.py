"""How often the domain check (``edgemeta.runtime.domain``) flags images, per image set.

Flags should be rare on handwriting the model suits (the Omniglot evaluation set, 13,180
images, and the MNIST test set, 10,000, neither trained on) and near-certain on photo-like
images: a generated, varied set (colour textures, gradients, coloured shapes on noise, 1/f
"natural" noise in colour and in gray, scenes of shapes on smooth backgrounds; 24-199 pixels a
side, not square), through ``EmbeddingModel.out_of_domain`` as ``enroll`` and ``classify`` do.

    python benchmarks/domain_check.py [--model models/default.onnx] [--data ../shared/data] [--photos 3000]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

DEFAULT_DATA = str(Path(__file__).resolve().parents[2] / "shared" / "data")
KINDS = ("texture", "gradient", "shapes on noise", "colour 1/f noise", "gray 1/f noise", "scene")


def _smooth_noise(rng: np.random.Generator, h: int, w: int, c: int, alpha: float) -> np.ndarray:
    """float [h, w, c] in 0..1: noise with a 1/f^alpha spectrum, like natural images."""
    f = np.fft.fft2(rng.standard_normal((c, h, w)))
    r = np.sqrt(np.fft.fftfreq(h)[:, None] ** 2 + np.fft.fftfreq(w)[None, :] ** 2)
    r[0, 0] = 1.0
    x = np.real(np.fft.ifft2(f / r**alpha)).transpose(1, 2, 0)
    return (x - x.min()) / (np.ptp(x) + 1e-9)


def _one(kind: int, rng: np.random.Generator) -> np.ndarray:
    h, w = int(rng.integers(24, 200)), int(rng.integers(24, 200))
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    if kind == 0:
        x = np.zeros((h, w, 3))
        for _ in range(int(rng.integers(2, 6))):
            f, th = rng.uniform(2, 30), rng.uniform(0, np.pi)
            wave = np.sin(2 * np.pi * f * (xx * np.cos(th) + yy * np.sin(th)) + rng.uniform(0, 6))
            x += wave[..., None] * rng.uniform(0, 1, 3)
        return (x - x.min()) / (np.ptp(x) + 1e-9)
    if kind == 1:
        a, b = rng.uniform(0, 1, 3), rng.uniform(0, 1, 3)
        t = xx * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1)
        return a + (b - a) * ((t - t.min()) / (np.ptp(t) + 1e-9))[..., None]
    if kind == 2:
        x = rng.uniform(0, 1, 3) * 0.5 + rng.normal(0, rng.uniform(0.05, 0.3), (h, w, 3))
        for _ in range(int(rng.integers(1, 5))):
            cy, cx, ry, rx = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.1, 0.4), rng.uniform(0.1, 0.4)
            ellipse = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            x[ellipse if rng.random() < 0.5 else (abs(yy - cy) < ry) & (abs(xx - cx) < rx)] = rng.uniform(0, 1, 3)
        return x
    if kind in (3, 4):
        x = _smooth_noise(rng, h, w, 3 if kind == 3 else 1, rng.uniform(0.8, 2.0))
        return np.repeat(x, 3, axis=2) if kind == 4 else x
    x = _smooth_noise(rng, h, w, 3, 1.5) * 0.7
    for _ in range(int(rng.integers(1, 4))):
        cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.3)
        x[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 1, 3)
    return x + rng.normal(0, 0.03, x.shape)


def photo_like(n: int, seed: int = 0) -> list[np.ndarray]:
    """``n`` photo-like RGB images, uint8 [h, w, 3] of varied sizes, cycling through ``KINDS``."""
    rng = np.random.default_rng(seed)
    return [(np.clip(_one(i % len(KINDS), rng), 0, 1) * 255).astype(np.uint8) for i in range(n)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--data", default=DEFAULT_DATA)
    parser.add_argument("--photos", type=int, default=3000)
    args = parser.parse_args()
    from edgemeta.lab.datasets import load_source
    from edgemeta.runtime import EmbeddingModel
    from edgemeta.runtime.domain import out_of_domain

    model = EmbeddingModel(args.model) if args.model else EmbeddingModel.default()
    spec = model.meta.preprocess
    print(f"model {model.path}: domain {model.meta.domain.get('description', 'not recorded')}")
    photos = photo_like(args.photos)
    flags = model.out_of_domain(photos)
    print(f"photo-like images: {flags.mean():.2%} flagged of {len(flags)}")
    for k, kind in enumerate(KINDS):
        print(f"  {kind}: {flags[k :: len(KINDS)].mean():.2%} of {len(flags[k :: len(KINDS)])}")
    for name, path, split in (("Omniglot evaluation", "omniglot", "evaluation"), ("MNIST test", "mnist", None)):
        images = load_source(Path(args.data) / path, spec, split=split).images
        flags = out_of_domain(images, model.meta.domain)  # already prepared
        print(f"{name}: {flags.mean():.2%} flagged of {len(flags)} ({int(flags.sum())} images)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
