"""Few-shot data sources, loaded into one canonical in-memory form (numpy + Pillow only).

``load_source`` accepts:

- the Omniglot npz folder (``images_background.npz``, ``images_evaluation.npz``) or one npz file;
- the official Omniglot release: folders ``images_background/Alphabet/characterNN/*.png``
  (or their parent), or the two official zips (or their parent folder);
- MNIST IDX files: a folder holding ``*-images-idx3-ubyte[.gz]`` or that file (labels beside it);
- any class-per-folder image tree (torchvision ``ImageFolder`` conventions);
- the names ``omniglot``, ``mnist``, ``mnist-train``: the official files, fetched once (``fetch.py``).

Every image goes through ``prepare_uint8(spec)`` once, so ``FewShotData.images`` is exactly what
the runtime would produce for the same pictures. Omniglot rotations by 90/180/270 degrees
(counter-clockwise) become extra classes named ``Alphabet/characterNN/rotDDD``.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgemeta.runtime.errors import DataError, EdgemetaError
from edgemeta.runtime.images import IMAGE_SUFFIXES
from edgemeta.runtime.preprocess import PreprocessSpec, prepare_uint8

from .fetch import NAMES, fetch, is_named
from .omniglot_files import (
    MAX_UNPACKED_BYTES,
    OMNIGLOT_SETS,
    READ_ERRORS,
    Char,
    canonical_order,
    dir_chars,
    npz_chars,
    package_text,
    zip_chars,
)

SPLITS = ("background", "evaluation", "vinyals-train", "vinyals-val", "vinyals-trainval", "vinyals-test")
ROTATIONS = (0, 90, 180, 270)


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


def held_out_classes(data: FewShotData, groups: int, min_classes: int) -> np.ndarray:
    """bool [num_classes]: a fixed slice of whole groups (alphabets) -- or 10% of the classes
    when there are no groups -- to validate on. Never depends on the seed, so runs compare.
    Here, not in train: training validates on these classes and export verifies on them."""
    rng = np.random.default_rng(20240601)
    names = sorted({g for g in data.class_groups if g})
    if len(names) > groups >= 1:
        chosen = set(rng.choice(names, size=groups, replace=False).tolist())
        return np.array([g in chosen for g in data.class_groups])
    n = max(min_classes, data.num_classes // 10)
    mask = np.zeros(data.num_classes, dtype=bool)
    if data.num_classes - n >= min_classes:
        mask[rng.choice(data.num_classes, size=n, replace=False)] = True
    return mask


def check_split(split: str | None) -> str | None:
    """``split`` when it is None or one of ``SPLITS``, else DataError."""
    if split is not None and split not in SPLITS:
        raise DataError(f"unknown split {split!r}; one of {', '.join(SPLITS)}")
    return split


def load_source(
    src: str | Path, spec: PreprocessSpec, split: str | None = None, rotations: bool | None = None
) -> FewShotData:
    """Load ``src`` as a ``FewShotData`` at ``spec``'s size, channels and polarity.

    split: Omniglot only. ``background`` / ``evaluation`` (the Lake split sets) or
        ``vinyals-*`` (character lists with explicit rotations). None: every character the
        source holds.
    rotations: add the 90/180/270 degree rotations as classes. None: only what a Vinyals
        list names (no rotations for the other splits). False with a Vinyals split keeps rot000.
    """
    check_split(split)
    path = resolve(src, split)
    if not path.exists():
        raise DataError(f"data source not found: {path} (nor one of the named sources {', '.join(NAMES)})")
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
    except READ_ERRORS as e:
        raise DataError(f"cannot read data source {path}: {type(e).__name__}: {e}") from None


def resolve(src: str | Path, split: str | None = None) -> Path:
    """The local path behind ``src``: a named source (``fetch.NAMES``) fetched once, else ``src`` itself."""
    if not is_named(src):
        return Path(src).expanduser()
    if NAMES[str(src)] != "omniglot" and split is not None:
        raise DataError(f"--split applies to Omniglot sources only ({src} is MNIST)")
    return fetch(str(src), _sets_for(split))


def is_omniglot(src: str | Path) -> bool:
    """Whether ``src`` is an Omniglot source, without fetching a named one; False when unreadable."""
    if is_named(src):
        return NAMES[str(src)] == "omniglot"
    path = Path(src).expanduser()
    try:
        return path.exists() and _detect(path).startswith("omniglot")
    except (EdgemetaError, OSError):
        return False


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
    if any((path / f"images_{s}").is_dir() for s in OMNIGLOT_SETS) or name in (
        "images_background",
        "images_evaluation",
    ):
        return "omniglot-dir"
    if any((path / f"images_{s}.zip").is_file() for s in OMNIGLOT_SETS):
        return "omniglot-zip"
    if any(p.is_file() and "idx3-ubyte" in p.name for p in path.iterdir()):
        return "mnist"
    return "folder"


# ---------------------------------------------------------------- Omniglot


def _load_omniglot(
    path: Path, kind: str, spec: PreprocessSpec, split: str | None, rotations: bool | None
) -> FewShotData:
    sets = _sets_for(split)
    chars = {"omniglot-npz": npz_chars, "omniglot-dir": dir_chars, "omniglot-zip": zip_chars}[kind](path, sets)
    chars = canonical_order(chars)
    if not chars:
        raise DataError(f"no Omniglot characters for split {split or 'all'} in {path}")
    if split is not None and split.startswith("vinyals-"):
        wanted = _vinyals_list(split[len("vinyals-") :])
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


def _build_omniglot(
    chars: list[Char], wanted: list[tuple[str, str, int]], spec: PreprocessSpec, named_rotations: bool
) -> FewShotData:
    index = {(a, c): i for i, (a, c, _) in enumerate(chars)}
    missing = [f"{a}/{c}" for a, c, _ in wanted if (a, c) not in index]
    if missing:
        raise DataError(
            f"the source lacks {len(missing)} characters of the split, e.g. {missing[0]} "
            "(a Vinyals split needs both background and evaluation sets)"
        )
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
    text = package_text(f"vinyals_{name}.txt.gz")
    out = []
    for line in text.split():
        alphabet, character, rot = line.split("/")
        out.append((alphabet, character, int(rot[3:])))
    return out


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
    return FewShotData(
        prepare_uint8(images, spec), remap.astype(np.int64), [str(int(c)) for c in classes], [""] * len(classes)
    )


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    """An IDX file of unsigned bytes (``.gz`` or plain) as uint8 with ``ndim`` dimensions."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as f:
        header = f.read(4 + 4 * ndim)
        if len(header) < 4 + 4 * ndim or header[:2] != b"\0\0" or header[2] != 0x08 or header[3] != ndim:
            raise DataError(f"{path.name} is not an IDX file of unsigned bytes with {ndim} dimensions")
        shape = tuple(int.from_bytes(header[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
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
    files_per_class = [
        sorted(f for f in c.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES) for c in classes
    ]
    kept = [(c.name, fs) for c, fs in zip(classes, files_per_class) if fs]
    if not kept:
        raise DataError(f"no class folders with images in {path} (expected one sub-folder of images per class)")
    images, targets = [], []
    for label, (_, files) in enumerate(kept):
        images.append(prepare_uint8(files, spec))
        targets.append(np.full(len(files), label, dtype=np.int64))
    return FewShotData(np.concatenate(images), np.concatenate(targets), [n for n, _ in kept], [""] * len(kept))


_RGB_PROBE = PreprocessSpec(size=(32, 32), channels=3, polarity="none", mean=(0.0,) * 3, std=(1.0,) * 3)


def colour_source(src: str | Path, sample: int = 3, limit: int = 300) -> bool:
    """Whether ``src`` is a class-per-folder tree holding colour images: the first ``sample``
    images of each class (``limit`` in all), seen at 32x32, have visibly different channels
    (an RGB file of gray pixels counts as gray). Omniglot and MNIST sources are gray."""
    if is_named(src):
        return False
    path = Path(src).expanduser()
    try:
        if not path.is_dir() or _detect(path) != "folder":
            return False
        classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        files = [f for c in classes for f in sorted(c.rglob("*"))[:sample] if f.suffix.lower() in IMAGE_SUFFIXES]
    except (EdgemetaError, OSError):
        return False
    for f in files[:limit]:
        try:
            rgb = prepare_uint8(f, _RGB_PROBE).astype(np.int16)
        except EdgemetaError:
            continue  # loading the data reports unreadable files
        spread = rgb.max(axis=-1) - rgb.min(axis=-1)
        if (spread > 24).mean() > 0.01:
            return True
    return False
