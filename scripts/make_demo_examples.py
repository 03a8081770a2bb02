"""Write the demo's example images into models/examples/ from the real data, with manifest.json (the web
demo's list of them; run once by developers).

10 characters from 10 different Omniglot *evaluation* alphabets (never seen in training),
6 drawings each, as the original 105x105 1-bit PNGs; and 6 MNIST test digits per class
(white on black, 28x28). Usage: python scripts/make_demo_examples.py [DATA_DIR]
"""

from __future__ import annotations

import csv
import gzip
import sys
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
PER_CLASS = {"omniglot": 6, "mnist": 10}
ALPHABETS = [
    "Angelic",
    "Atlantean",
    "Ge_ez",
    "Glagolitic",
    "Gurmukhi",
    "Kannada",
    "Malayalam",
    "Mongolian",
    "Tengwar",
    "Tibetan",
]


def omniglot(data: Path, out: Path) -> None:
    rows = [
        r
        for r in csv.DictReader(open(data / "omniglot" / "characters.tsv"), delimiter="\t")
        if r["set"] == "evaluation"
    ]
    with np.load(data / "omniglot" / "images_evaluation.npz", allow_pickle=False) as z:
        images = z["images"]
    rng = np.random.default_rng(7)
    for alphabet in ALPHABETS:
        candidates = [r for r in rows if r["alphabet"] == alphabet]
        row = candidates[int(rng.integers(len(candidates)))]
        folder = out / "omniglot" / f"{alphabet}-{row['character'].replace('character', 'c')}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, d in enumerate(rng.choice(20, PER_CLASS["omniglot"], replace=False)):
            Image.fromarray(images[int(row["index"]), d]).convert("1").save(folder / f"{i}.png", optimize=True)


def mnist(data: Path, out: Path) -> None:
    with gzip.open(data / "mnist" / "t10k-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(data / "mnist" / "t10k-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    rng = np.random.default_rng(7)
    for digit in range(10):
        folder = out / "mnist" / f"digit{digit}"
        folder.mkdir(parents=True, exist_ok=True)
        for i, idx in enumerate(rng.choice(np.flatnonzero(labels == digit), PER_CLASS["mnist"], replace=False)):
            Image.fromarray(images[idx]).save(folder / f"{i}.png", optimize=True)


if __name__ == "__main__":
    data = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO.parent / "shared" / "data"
    out = REPO / "models" / "examples"
    omniglot(data, out)
    mnist(data, out)
    from edgemeta.commands.web_cmd import write_examples_manifest  # the web demo's preset list

    write_examples_manifest(out)
    print(f"wrote examples to {out}")
