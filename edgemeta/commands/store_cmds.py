"""``enroll`` and ``remove``: the commands that change a prototype store (numpy + onnxruntime only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .options import (
    domain_flags,
    expand_images,
    is_image_file,
    json_option,
    load_model,
    lock_timeout_option,
    model_option,
    printable,
    store_option,
    threads_option,
)


def _embed_folder(clf: Any, folder: Path) -> dict[str, tuple[Any, int]]:
    """Per sub-folder (a class): the sum float64 [D] of its images' support embeddings and their number."""
    from edgemeta.runtime.errors import ImageError
    from edgemeta.runtime.store import check_label

    classes = sorted(d for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise ImageError(f"no class sub-folders in {folder}")
    shots: dict[str, tuple[Any, int]] = {}
    for d in classes:  # the store file is written only after every class embedded
        shots[check_label(d.name)] = clf.support_sum([str(p) for p in expand_images([d])])
    return shots


def _enroll_arguments(
    label_option: str | None, label: str | None, images: tuple[Path, ...], folder: Path | None
) -> tuple[str | None, tuple[Path, ...]]:
    """enroll's (label, images), or a one-line error for each way of getting them wrong."""
    from edgemeta.runtime.errors import EdgemetaError
    from edgemeta.runtime.store import check_label

    if label_option is not None:  # with --label every argument is an image
        label, images = label_option, images if label is None else (Path(label), *images)
    if folder is None and (label is None or not images):
        raise EdgemetaError("enroll needs a LABEL and at least one IMAGE (or --folder DIR)")
    if folder is not None and (label is not None or images):
        raise EdgemetaError("give either --folder DIR or LABEL IMAGE..., not both")
    if label_option is None and label is not None and is_image_file(label):
        raise EdgemetaError(
            f"the label {printable(label)!r} is an image file and more images follow: did you "
            "forget the label? (to name a class after a file, give it as --label)"
        )
    if label is not None:
        check_label(label)
    return label, images


@click.command()
@model_option()
@store_option()
@click.option(
    "--folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Enroll every sub-folder of this folder as a class named after it.",
)
@click.option(
    "--label",
    "label_option",
    default=None,
    help="The class name, instead of the LABEL argument (then every argument is an IMAGE).",
)
@threads_option()
@lock_timeout_option()
@json_option()
@click.argument("label", required=False)
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
def enroll(
    model_path: Path | None,
    store_path: Path,
    folder: Path | None,
    threads: int | None,
    lock_timeout: float,
    as_json: bool,
    label: str | None,
    images: tuple[Path, ...],
    label_option: str | None = None,
) -> None:
    """Add IMAGES as examples of class LABEL to the store (created if missing).

    Enrolling a label again adds more shots to it. A folder among IMAGES stands for the
    images inside it; --folder DIR enrolls each sub-folder of DIR as a class. Any number of
    processes may enroll, remove and classify on one store at once: every change is kept.
    """
    from edgemeta.runtime.classifier import FewShotClassifier
    from edgemeta.runtime.store import check_writable

    label, images = _enroll_arguments(label_option, label, images, folder)
    check_writable(store_path)  # before the slow part (the write checks again)
    model = load_model(model_path, threads=threads)
    scratch = FewShotClassifier(model)
    if folder is not None:
        shots = _embed_folder(scratch, folder)
    else:
        shots = {label: scratch.support_sum([str(p) for p in expand_images(images)])}
    enrolled = (
        [p for d in sorted(d for d in folder.iterdir() if d.is_dir()) for p in expand_images([d])]
        if folder is not None
        else expand_images(images)
    )
    domain_flags(model, enrolled)
    # The lock covers only re-read, add and atomic write: other writers wait milliseconds, not
    # for this process's image decoding and network runs.
    with FewShotClassifier.update(store_path, model, lock_timeout=lock_timeout) as clf:
        for lab, (total, n) in shots.items():
            clf.add_embeddings(lab, total, n)
    counts = clf.counts()
    added = {lab: n for lab, (_, n) in shots.items()}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "store": str(store_path),
                    "added": added,
                    "shots": {k: counts[k] for k in added},
                    "classes": len(counts),
                }
            )
        )
        return
    for lab, n in added.items():
        click.echo(f"enrolled {n} image(s) as {printable(lab)!r}: {counts[lab]} shot(s) in all")
    click.echo(f"store {store_path}: {len(counts)} class(es)")


@click.command()
@store_option()
@lock_timeout_option()
@json_option()
@click.argument("labels", nargs=-1)
def remove(store_path: Path, lock_timeout: float, as_json: bool, labels: tuple[str, ...]) -> None:
    """Remove the classes LABELS from the store (no model needed).

    Every LABEL must be in the store, else nothing is removed. Safe beside other processes
    enrolling, removing and classifying on the same store.
    """
    from edgemeta.runtime.errors import EdgemetaError
    from edgemeta.runtime.store_lock import remove_classes

    if not labels:
        raise EdgemetaError("remove needs at least one LABEL")
    left = remove_classes(store_path, labels, lock_timeout)
    removed = list(dict.fromkeys(labels))
    if as_json:
        click.echo(json.dumps({"store": str(store_path), "removed": removed, "classes": len(left.labels)}))
        return
    for lab in removed:
        click.echo(f"removed {printable(lab)!r}")
    click.echo(f"store {store_path}: {len(left.labels)} class(es)")
