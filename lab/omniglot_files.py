"""Readers of the files behind the Omniglot sources: the npz files, the official release's
folders and zips, and its PNG drawings; the limits that refuse hostile archives.

Each reader returns ``Char`` rows: (alphabet, character, uint8 [D, H, W] drawings as stored).
"""

from __future__ import annotations

import gzip
import io
import lzma
import tokenize
import warnings
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from edgemeta.runtime.errors import DataError
from edgemeta.runtime.images import MAX_IMAGE_PIXELS

OMNIGLOT_SETS = ("background", "evaluation")
# Refuse archives that unpack to more than this: a few-shot data set is far smaller.
MAX_UNPACKED_BYTES = 4 * 1024**3
MAX_MEMBER_BYTES = 16 * 1024**2
# What damaged or hostile files raise from zipfile/gzip/numpy/PIL; all become DataError.
READ_ERRORS = (
    OSError,
    ValueError,
    EOFError,
    zipfile.BadZipFile,
    zlib.error,
    lzma.LZMAError,
    NotImplementedError,
    RuntimeError,
    MemoryError,
    tokenize.TokenError,
)
# One Omniglot character before preprocessing: alphabet, character folder name, drawings.
Char = tuple[str, str, np.ndarray]


def package_text(filename: str) -> str:
    data = resources.files("edgemeta.lab").joinpath("splits", filename).read_bytes()
    return gzip.decompress(data).decode("utf-8")


def character_table() -> dict[str, list[tuple[str, str]]]:
    """set -> [(alphabet, character)] in npz row order, from the shipped characters.tsv."""
    table: dict[str, list[tuple[str, str]]] = {s: [] for s in OMNIGLOT_SETS}
    for line in package_text("characters.tsv.gz").splitlines()[1:]:
        set_name, index, _id, alphabet, character = line.split("\t")
        table[set_name].append((alphabet, character))
    return table


def canonical_order(chars: list[Char]) -> list[Char]:
    """``chars`` in the npz row order (background before evaluation), so that the official folders
    and zips give the same classes, and so the same episodes, as the npz files; characters the
    table does not know follow in their given order."""
    table = character_table()
    rank = {name: i for i, name in enumerate(table["background"] + table["evaluation"])}
    return sorted(chars, key=lambda ch: rank.get((ch[0], ch[1]), len(rank)))


def npz_chars(path: Path, sets: tuple[str, ...]) -> list[Char]:
    if path.is_file():
        set_name = next((s for s in OMNIGLOT_SETS if s in path.stem), None)
        if set_name is None:
            raise DataError(
                f"cannot tell the Omniglot set of {path.name}: expected images_background.npz or images_evaluation.npz"
            )
        files = {set_name: path}
    else:
        files = {s: path / f"images_{s}.npz" for s in sets if (path / f"images_{s}.npz").is_file()}
    table = character_table()
    chars: list[Char] = []
    for set_name, file in files.items():
        images = read_npz_images(file)
        names = table[set_name]
        if images.shape[0] != len(names):
            raise DataError(
                f"{file.name} holds {images.shape[0]} characters, the Omniglot {set_name} set has {len(names)}"
            )
        chars += [(a, c, images[i]) for i, (a, c) in enumerate(names)]
    return chars


def read_npz_images(file: Path) -> np.ndarray:
    """bool/uint8 [C, D, H, W] from an Omniglot npz, refusing pickles and bombs."""
    with zipfile.ZipFile(file) as z:
        if sum(i.file_size for i in z.infolist()) > MAX_UNPACKED_BYTES:
            raise DataError(f"{file} unpacks to more than {MAX_UNPACKED_BYTES} bytes")
    with np.load(file, allow_pickle=False) as npz:
        if "images" not in npz.files:
            raise DataError(f"{file} has no 'images' array")
        images = npz["images"]
    if images.ndim != 4 or images.dtype not in (np.bool_, np.uint8) or 0 in images.shape:
        raise DataError(
            f"{file}: 'images' must be bool or uint8 [characters, drawings, H, W], got {images.dtype} {images.shape}"
        )
    return images


def dir_chars(path: Path, sets: tuple[str, ...]) -> list[Char]:
    if path.name in ("images_background", "images_evaluation"):
        roots = [path] if path.name[len("images_") :] in sets else []
    else:
        roots = [path / f"images_{s}" for s in sets if (path / f"images_{s}").is_dir()]
    chars: list[Char] = []
    for root in roots:
        for alphabet in sorted(p for p in root.iterdir() if p.is_dir()):
            for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
                files = sorted(p for p in character.iterdir() if p.suffix.lower() == ".png")
                if files:
                    chars.append(
                        (alphabet.name, character.name, decode_gray([f.read_bytes() for f in files], character))
                    )
    return chars


def zip_chars(path: Path, sets: tuple[str, ...]) -> list[Char]:
    zips = (
        [path] if path.is_file() else [path / f"images_{s}.zip" for s in sets if (path / f"images_{s}.zip").is_file()]
    )
    chars: list[Char] = []
    for file in zips:
        if path.is_file() and not any(f"images_{s}" in file.name for s in sets):
            continue
        groups: dict[tuple[str, str], list[bytes]] = {}
        with zipfile.ZipFile(file) as z:
            infos = [i for i in z.infolist() if i.filename.lower().endswith(".png")]
            if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES or any(
                i.file_size > MAX_MEMBER_BYTES for i in infos
            ):
                raise DataError(f"{file} unpacks to implausibly large images")
            for info in sorted(infos, key=lambda i: i.filename):
                parts = info.filename.split("/")
                if len(parts) >= 3:
                    groups.setdefault((parts[-3], parts[-2]), []).append(z.read(info))
        chars += [(a, c, decode_gray(blobs, f"{file}:{a}/{c}")) for (a, c), blobs in groups.items()]
    return chars


def decode_gray(blobs: list[bytes], where: object) -> np.ndarray:
    """PNG bytes of one character -> uint8 [D, H, W] (all drawings must share a size)."""
    arrays = []
    for blob in blobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(blob)) as img:
                    if img.size[0] * img.size[1] > MAX_IMAGE_PIXELS:
                        raise DataError(
                            f"an image of {where} declares {img.size[0]}x{img.size[1]} pixels, over the limit"
                        )
                    arrays.append(np.asarray(img.convert("L"), dtype=np.uint8))
        except DataError:
            raise
        except (*READ_ERRORS, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot decode an image of {where}: {e}") from None
    if len({a.shape for a in arrays}) != 1:
        raise DataError(f"drawings of {where} differ in size")
    return np.stack(arrays)
