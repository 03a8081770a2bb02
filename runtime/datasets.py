"""Few-shot data sources, loaded into one canonical in-memory form (numpy + Pillow only).

``load_source`` accepts:

- the Omniglot npz folder (``images_background.npz``, ``images_evaluation.npz``) or one npz file;
- the official Omniglot release: folders ``images_background/Alphabet/characterNN/*.png``
  (or their parent), or the two official zips (or their parent folder);
- MNIST IDX files: a folder holding ``*-images-idx3-ubyte[.gz]`` or that file (labels beside it);
- any class-per-folder image tree (torchvision ``ImageFolder`` conventions).

Every image goes through ``prepare_uint8(spec)`` once, so ``FewShotData.images`` is exactly what
the runtime would produce for the same pictures. Omniglot rotations by 90/180/270 degrees
(counter-clockwise) become extra classes named ``Alphabet/characterNN/rotDDD``.
"""

from __future__ import annotations

import gzip
import io
import lzma
import tokenize
import warnings
import zipfile
import zlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DataError, EdgemetaError
from .images import MAX_IMAGE_PIXELS
from .preprocess import PreprocessSpec, prepare_uint8

SPLITS = ("background", "evaluation", "vinyals-train", "vinyals-val", "vinyals-trainval", "vinyals-test")
OMNIGLOT_SETS = ("background", "evaluation")
ROTATIONS = (0, 90, 180, 270)
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm"}
# Refuse archives that unpack to more than this: a few-shot data set is far smaller.
MAX_UNPACKED_BYTES = 4 * 1024**3
MAX_MEMBER_BYTES = 16 * 1024**2
# What damaged or hostile files raise from zipfile/gzip/numpy/PIL; all become DataError.
_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error, lzma.LZMAError,
                NotImplementedError, RuntimeError, MemoryError, tokenize.TokenError)


@dataclass
class FewShotData:
    """A labelled image set ready for episodes.

    images: uint8 [M, H, W, C], already through ``prepare_uint8(spec)``.
    targets: int64 [M], class index 0..len(class_names)-1.
    class_names: e.g. ``"Alphabet/character01/rot090"``.
    class_groups: group per class (the Omniglot alphabet); ``""`` when none.
    """

    images: np.ndarray
    targets: np.ndarray
    class_names: list[str]
    class_groups: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def counts(self) -> np.ndarray:
        """int64 [num_classes]: examples per class."""
        return np.bincount(self.targets, minlength=self.num_classes)


# One Omniglot character before preprocessing: alphabet, character folder name, drawings.
_Char = tuple[str, str, np.ndarray]


def load_source(src: str | Path, spec: PreprocessSpec, split: str | None = None,
                rotations: bool | None = None) -> FewShotData:
    """Load ``src`` as a ``FewShotData`` at ``spec``'s size, channels and polarity.

    split: Omniglot only. ``background`` / ``evaluation`` (the Lake split sets) or
        ``vinyals-*`` (character lists with explicit rotations). None: every character the
        source holds.
    rotations: add the 90/180/270 degree rotations as classes. None: only what a Vinyals
        list names (no rotations for the other splits). False with a Vinyals split keeps rot000.
    """
    path = Path(src).expanduser()
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
    if not path.exists():
        raise DataError(f"data source not found: {path}")
    kind = _detect(path)
    if kind in ("mnist", "folder") and split is not None:
        raise DataError(f"--split applies to Omniglot sources only ({path} looks like {kind})")
    if kind in ("mnist", "folder") and rotations:
        raise DataError("rotations as classes apply to Omniglot sources only")
    try:
        if kind == "mnist":
            return _load_mnist(path, spec)
        if kind == "folder":
            return _load_folder(path, spec)
        return _load_omniglot(path, kind, spec, split, rotations)
    except EdgemetaError as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"{path}: {e}") from None
    except _READ_ERRORS as e:
        raise DataError(f"cannot read data source {path}: {type(e).__name__}: {e}") from None


def _detect(path: Path) -> str:
    name = path.name.lower()
    if path.is_file():
        if name.endswith(".npz"):
            return "omniglot-npz"
        if name.endswith(".zip"):
            return "omniglot-zip"
        if "idx3-ubyte" in name:
            return "mnist"
        raise DataError(f"unsupported data file {path}: expected an Omniglot .npz or .zip, or an MNIST idx3-ubyte file")
    if any((path / f"images_{s}.npz").is_file() for s in OMNIGLOT_SETS):
        return "omniglot-npz"
    if any((path / f"images_{s}").is_dir() for s in OMNIGLOT_SETS) or name in ("images_background", "images_evaluation"):
        return "omniglot-dir"
    if any((path / f"images_{s}.zip").is_file() for s in OMNIGLOT_SETS):
        return "omniglot-zip"
    if any(p.is_file() and "idx3-ubyte" in p.name for p in path.iterdir()):
        return "mnist"
    return "folder"


# ---------------------------------------------------------------- Omniglot


def _load_omniglot(path: Path, kind: str, spec: PreprocessSpec, split: str | None,
                   rotations: bool | None) -> FewShotData:
    sets = _sets_for(split)
    chars = {"omniglot-npz": _npz_chars, "omniglot-dir": _dir_chars, "omniglot-zip": _zip_chars}[kind](path, sets)
    if not chars:
        raise DataError(f"no Omniglot characters for split {split or 'all'} in {path}")
    if split is not None and split.startswith("vinyals-"):
        wanted = _vinyals_list(split[len("vinyals-"):])
        if rotations is False:
            wanted = [w for w in wanted if w[2] == 0]
        elif rotations:
            wanted = list(dict.fromkeys((a, c, r) for a, c, _ in wanted for r in ROTATIONS))
    else:
        rots = ROTATIONS if rotations else (0,)
        wanted = [(a, c, r) for a, c, _ in chars for r in rots]
    return _build_omniglot(chars, wanted, spec, named_rotations=bool(rotations) or _is_vinyals(split))


def _is_vinyals(split: str | None) -> bool:
    return split is not None and split.startswith("vinyals-")


def _sets_for(split: str | None) -> tuple[str, ...]:
    if split in OMNIGLOT_SETS:
        return (split,)
    return OMNIGLOT_SETS


def _build_omniglot(chars: list[_Char], wanted: list[tuple[str, str, int]], spec: PreprocessSpec,
                    named_rotations: bool) -> FewShotData:
    index = {(a, c): i for i, (a, c, _) in enumerate(chars)}
    missing = [f"{a}/{c}" for a, c, _ in wanted if (a, c) not in index]
    if missing:
        raise DataError(f"the source lacks {len(missing)} characters of the split, e.g. {missing[0]} "
                        "(a Vinyals split needs both background and evaluation sets)")
    square = spec.size[0] == spec.size[1]
    prepared: dict[str, np.ndarray] = {}
    images, targets, names, groups = [], [], [], []
    for label, (alphabet, character, rot) in enumerate(wanted):
        raw = chars[index[(alphabet, character)]][2]
        key = f"{alphabet}/{character}"
        if square:
            if key not in prepared:
                prepared[key] = prepare_uint8(raw, spec)
            batch = np.rot90(prepared[key], rot // 90, axes=(1, 2))
        else:
            batch = prepare_uint8(np.ascontiguousarray(np.rot90(raw, rot // 90, axes=(1, 2))), spec)
        images.append(np.ascontiguousarray(batch))
        targets.append(np.full(len(batch), label, dtype=np.int64))
        names.append(f"{key}/rot{rot:03d}" if named_rotations else key)
        groups.append(alphabet)
    return FewShotData(np.concatenate(images), np.concatenate(targets), names, groups)


def _vinyals_list(name: str) -> list[tuple[str, str, int]]:
    text = _package_text(f"vinyals_{name}.txt.gz")
    out = []
    for line in text.split():
        alphabet, character, rot = line.split("/")
        out.append((alphabet, character, int(rot[3:])))
    return out


def _package_text(filename: str) -> str:
    data = resources.files("edgemeta.train").joinpath("splits", filename).read_bytes()
    return gzip.decompress(data).decode("utf-8")


def _character_table() -> dict[str, list[tuple[str, str]]]:
    """set -> [(alphabet, character)] in npz row order, from the shipped characters.tsv."""
    table: dict[str, list[tuple[str, str]]] = {s: [] for s in OMNIGLOT_SETS}
    for line in _package_text("characters.tsv.gz").splitlines()[1:]:
        set_name, index, _id, alphabet, character = line.split("\t")
        table[set_name].append((alphabet, character))
    return table


def _npz_chars(path: Path, sets: tuple[str, ...]) -> list[_Char]:
    if path.is_file():
        set_name = next((s for s in OMNIGLOT_SETS if s in path.stem), None)
        if set_name is None:
            raise DataError(f"cannot tell the Omniglot set of {path.name}: expected images_background.npz or images_evaluation.npz")
        files = {set_name: path}
    else:
        files = {s: path / f"images_{s}.npz" for s in sets if (path / f"images_{s}.npz").is_file()}
    table = _character_table()
    chars: list[_Char] = []
    for set_name, file in files.items():
        images = _read_npz_images(file)
        names = table[set_name]
        if images.shape[0] != len(names):
            raise DataError(f"{file.name} holds {images.shape[0]} characters, the Omniglot {set_name} set has {len(names)}")
        chars += [(a, c, images[i]) for i, (a, c) in enumerate(names)]
    return chars


def _read_npz_images(file: Path) -> np.ndarray:
    """bool/uint8 [C, D, H, W] from an Omniglot npz, refusing pickles and bombs."""
    with zipfile.ZipFile(file) as z:
        if sum(i.file_size for i in z.infolist()) > MAX_UNPACKED_BYTES:
            raise DataError(f"{file} unpacks to more than {MAX_UNPACKED_BYTES} bytes")
    with np.load(file, allow_pickle=False) as npz:
        if "images" not in npz.files:
            raise DataError(f"{file} has no 'images' array")
        images = npz["images"]
    if images.ndim != 4 or images.dtype not in (np.bool_, np.uint8) or 0 in images.shape:
        raise DataError(f"{file}: 'images' must be bool or uint8 [characters, drawings, H, W], got {images.dtype} {images.shape}")
    return images


def _dir_chars(path: Path, sets: tuple[str, ...]) -> list[_Char]:
    if path.name in ("images_background", "images_evaluation"):
        roots = [path] if path.name[len("images_"):] in sets else []
    else:
        roots = [path / f"images_{s}" for s in sets if (path / f"images_{s}").is_dir()]
    chars: list[_Char] = []
    for root in roots:
        for alphabet in sorted(p for p in root.iterdir() if p.is_dir()):
            for character in sorted(p for p in alphabet.iterdir() if p.is_dir()):
                files = sorted(p for p in character.iterdir() if p.suffix.lower() == ".png")
                if files:
                    chars.append((alphabet.name, character.name, _decode_gray([f.read_bytes() for f in files], character)))
    return chars


def _zip_chars(path: Path, sets: tuple[str, ...]) -> list[_Char]:
    zips = [path] if path.is_file() else [path / f"images_{s}.zip" for s in sets if (path / f"images_{s}.zip").is_file()]
    chars: list[_Char] = []
    for file in zips:
        if path.is_file() and not any(f"images_{s}" in file.name for s in sets):
            continue
        groups: dict[tuple[str, str], list[bytes]] = {}
        with zipfile.ZipFile(file) as z:
            infos = [i for i in z.infolist() if i.filename.lower().endswith(".png")]
            if sum(i.file_size for i in infos) > MAX_UNPACKED_BYTES or any(i.file_size > MAX_MEMBER_BYTES for i in infos):
                raise DataError(f"{file} unpacks to implausibly large images")
            for info in sorted(infos, key=lambda i: i.filename):
                parts = info.filename.split("/")
                if len(parts) >= 3:
                    groups.setdefault((parts[-3], parts[-2]), []).append(z.read(info))
        chars += [(a, c, _decode_gray(blobs, f"{file}:{a}/{c}")) for (a, c), blobs in groups.items()]
    return chars


def _decode_gray(blobs: list[bytes], where: object) -> np.ndarray:
    """PNG bytes of one character -> uint8 [D, H, W] (all drawings must share a size)."""
    arrays = []
    for blob in blobs:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(blob)) as img:
                    if img.size[0] * img.size[1] > MAX_IMAGE_PIXELS:
                        raise DataError(f"an image of {where} declares {img.size[0]}x{img.size[1]} pixels, over the limit")
                    arrays.append(np.asarray(img.convert("L"), dtype=np.uint8))
        except DataError:
            raise
        except (*_READ_ERRORS, SyntaxError, Image.DecompressionBombError) as e:
            raise DataError(f"cannot decode an image of {where}: {e}") from None
    if len({a.shape for a in arrays}) != 1:
        raise DataError(f"drawings of {where} differ in size")
    return np.stack(arrays)


# ---------------------------------------------------------------- MNIST


def _load_mnist(path: Path, spec: PreprocessSpec) -> FewShotData:
    if path.is_dir():
        candidates = sorted(p for p in path.iterdir() if p.is_file() and "idx3-ubyte" in p.name)
        if len(candidates) > 1:
            # Prefer the test set when both are present: it is the few-shot evaluation domain.
            candidates = [p for p in candidates if p.name.startswith("t10k")] or candidates[:1]
        path = candidates[0]
    labels_path = path.with_name(path.name.replace("images-idx3", "labels-idx1"))
    if not labels_path.is_file():
        raise DataError(f"MNIST labels file not found beside {path.name}: expected {labels_path.name}")
    images = _read_idx(path, ndim=3)
    labels = _read_idx(labels_path, ndim=1).astype(np.int64)
    if len(labels) != len(images):
        raise DataError(f"{path.name} holds {len(images)} images but {labels_path.name} {len(labels)} labels")
    classes = np.unique(labels)
    remap = np.searchsorted(classes, labels)
    return FewShotData(prepare_uint8(images, spec), remap.astype(np.int64), [str(int(c)) for c in classes],
                       [""] * len(classes))


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (``.gz`` or plain) as uint8 with ``ndim`` dimensions."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        header = f.read(4 + 4 * ndim)
        if len(header) < 4 + 4 * ndim or header[:2] != b"\0\0" or header[2] != 0x08 or header[3] != ndim:
            raise DataError(f"{path.name} is not an IDX file of unsigned bytes with {ndim} dimensions")
        shape = tuple(int.from_bytes(header[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
        count = int(np.prod(shape))
        if count > MAX_UNPACKED_BYTES:
            raise DataError(f"{path.name} declares {count} bytes, too many")
        data = f.read(count + 1)
    if len(data) != count:
        raise DataError(f"{path.name}: header declares shape {shape} but holds {len(data)} bytes")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


# ---------------------------------------------------------------- class-per-folder


def _load_folder(path: Path, spec: PreprocessSpec) -> FewShotData:
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    files_per_class = [sorted(f for f in c.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
                       for c in classes]
    kept = [(c.name, fs) for c, fs in zip(classes, files_per_class) if fs]
    if not kept:
        raise DataError(f"no class folders with images in {path} (expected one sub-folder of images per class)")
    images, targets = [], []
    for label, (_, files) in enumerate(kept):
        images.append(prepare_uint8(files, spec))
        targets.append(np.full(len(files), label, dtype=np.int64))
    return FewShotData(np.concatenate(images), np.concatenate(targets), [n for n, _ in kept], [""] * len(kept))
