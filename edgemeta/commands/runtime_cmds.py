"""``enroll``, ``remove``, ``classify`` and ``info``: the runtime's commands (numpy + onnxruntime only)."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import click

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm", ".pbm"}
model_option = click.option(
    "--model", "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="ONNX model file (default: the shipped model).")
store_option = click.option(
    "--store", "store_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
    help="Prototype store file (.npz).")
reject_option = click.option(
    "--reject", type=click.Choice(["strict", "balanced", "off"]), default=None,
    help="When an image is 'unknown' (runtime/rejection.py): strict (about 1% false accepts on the model's "
         "calibration classes), balanced (false rejects = false accepts there; the default), off (never).")
far_option = click.option(
    "--far", type=float, default=None,
    help="Instead of --reject: the target false-accept rate, in (0, 1), as calibrated for the model.")
threads_option = click.option("--threads", type=click.IntRange(min=1), default=None, help="onnxruntime intra-op threads.")
lock_timeout_option = click.option(
    "--lock-timeout", type=click.FloatRange(min=0), default=60.0, show_default=True,
    help="Seconds to wait while other processes write the store, then give up.")
query_views_option = click.option(
    "--query-views", type=click.Choice(["1", "3", "5", "9"]), default="1", show_default=True,
    help="Embed each image as the mean over this many 1-pixel shifts (test-time augmentation: more "
         "accurate, that many network evaluations per image).")


def load_model(model_path: Path | None, threads: int | None = None):
    from edgemeta.runtime.model import EmbeddingModel

    return EmbeddingModel.default(threads=threads) if model_path is None else EmbeddingModel(model_path, threads=threads)


def expand_images(paths: tuple[Path, ...] | list[Path]) -> list[Path]:
    """Paths as given; a folder stands for the image files directly inside it (sorted)."""
    from edgemeta.runtime.errors import ImageError

    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ImageError(f"no image files in folder {p}")
            out.extend(found)
        else:
            out.append(p)
    return out


def finite_threshold(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click callback for --threshold: FloatRange lets nan (which turns rejection off) and inf through."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite squared distance, got {value}")
    return value


def domain_flags(model, files: list[Path]) -> Any:
    """bool [N]: which images look unlike the model's training images; prints ONE warning line on
    stderr when most of them do (``edgemeta.runtime.domain``)."""
    from edgemeta.runtime.domain import warning_line

    flags = model.out_of_domain([str(p) for p in files])
    line = warning_line(flags, model.meta.domain)
    if line:
        click.echo(line, err=True)
    return flags


def printable(text: str) -> str:
    """Labels are data: escape control characters before they reach a terminal."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _embed_folder(clf, folder: Path) -> dict[str, tuple[Any, int]]:
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


def _enroll_arguments(label_option: str | None, label: str | None, images: tuple[Path, ...],
                      folder: Path | None) -> tuple[str | None, tuple[Path, ...]]:
    """enroll's (label, images), or a one-line error for each way of getting them wrong."""
    from edgemeta.runtime.errors import EdgemetaError
    from edgemeta.runtime.store import check_label

    if label_option is not None:  # with --label every argument is an image
        label, images = label_option, images if label is None else (Path(label), *images)
    if folder is None and (label is None or not images):
        raise EdgemetaError("enroll needs a LABEL and at least one IMAGE (or --folder DIR)")
    if folder is not None and (label is not None or images):
        raise EdgemetaError("give either --folder DIR or LABEL IMAGE..., not both")
    if label_option is None and label is not None and _is_image_file(label):
        raise EdgemetaError(f"the label {printable(label)!r} is an image file and more images follow: did you "
                            "forget the label? (to name a class after a file, give it as --label)")
    if label is not None:
        check_label(label)
    return label, images


def _is_image_file(text: str) -> bool:
    try:
        return Path(text).suffix.lower() in IMAGE_SUFFIXES and Path(text).is_file()
    except (OSError, ValueError):  # names too long or not encodable are no files
        return False


@click.command()
@model_option
@store_option
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Enroll every sub-folder of this folder as a class named after it.")
@click.option("--label", "label_option", default=None,
              help="The class name, instead of the LABEL argument (then every argument is an IMAGE).")
@threads_option
@lock_timeout_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.argument("label", required=False)
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
def enroll(model_path: Path | None, store_path: Path, folder: Path | None, threads: int | None,
           lock_timeout: float, as_json: bool, label: str | None, images: tuple[Path, ...],
           label_option: str | None = None) -> None:
    """Add IMAGES as examples of class LABEL to the store (created if missing).

    Enrolling a label again adds more shots to it. A folder among IMAGES stands for the
    images inside it; --folder DIR enrolls each sub-folder of DIR as a class. Any number of
    processes may enroll, remove and classify on one store at once: every change is kept.
    """
    from edgemeta.runtime.classifier import FewShotClassifier
    from edgemeta.runtime.store import check_writable

    label, images = _enroll_arguments(label_option, label, images, folder)
    check_writable(store_path)  # before the slow part (the write checks again)
    model = load_model(model_path, threads)
    scratch = FewShotClassifier(model)
    if folder is not None:
        shots = _embed_folder(scratch, folder)
    else:
        shots = {label: scratch.support_sum([str(p) for p in expand_images(images)])}
    enrolled = [p for d in sorted(d for d in folder.iterdir() if d.is_dir()) for p in expand_images([d])] \
        if folder is not None else expand_images(images)
    domain_flags(model, enrolled)
    # The lock covers only re-read, add and atomic write: other writers wait milliseconds, not
    # for this process's image decoding and network runs.
    with FewShotClassifier.update(store_path, model, lock_timeout=lock_timeout) as clf:
        for lab, (total, n) in shots.items():
            clf.add_embeddings(lab, total, n)
    counts = clf.counts()
    added = {lab: n for lab, (_, n) in shots.items()}
    if as_json:
        click.echo(json.dumps({"store": str(store_path), "added": added, "shots": {k: counts[k] for k in added},
                               "classes": len(counts)}))
        return
    for lab, n in added.items():
        click.echo(f"enrolled {n} image(s) as {printable(lab)!r}: {counts[lab]} shot(s) in all")
    click.echo(f"store {store_path}: {len(counts)} class(es)")


@click.command()
@store_option
@lock_timeout_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
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


@click.command()
@model_option
@store_option
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Candidates per image.")
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=None, callback=finite_threshold,
              help="One squared distance above which an image is 'unknown', for every class alike "
                   "(overrides --reject and the model's calibrated rule).")
@reject_option
@far_option
@query_views_option
@threads_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
def classify(model_path: Path | None, store_path: Path, top_k: int, threshold: float | None, reject: str | None,
             far: float | None, query_views: str, threads: int | None, as_json: bool, images: tuple[Path, ...]) -> None:
    """Classify IMAGES against the classes in the store."""
    from edgemeta.runtime.classifier import FewShotClassifier
    from edgemeta.runtime.errors import EdgemetaError, StoreError

    if not images:
        raise EdgemetaError("classify needs at least one IMAGE")
    if not store_path.exists():
        raise StoreError(f"store not found: {store_path} (enroll some classes first)")
    model = load_model(model_path, threads)
    clf = FewShotClassifier.load(store_path, model, query_views=int(query_views), threshold=threshold,
                                 reject=reject, far=far)
    if len(clf) == 0:
        raise StoreError(f"store {store_path} has no classes (enroll some first)")
    files = expand_images(images)
    predictions, accepted = clf.decide([str(p) for p in files], top_k=top_k)
    rows = [_result_row(f, preds, ok) for f, preds, ok in zip(files, predictions, accepted)]
    for row, flag in zip(rows, domain_flags(model, files)):
        row["out_of_domain"] = bool(flag)
    if as_json:
        click.echo(json.dumps({"model": str(model.path), "store": str(store_path), "threshold": threshold,
                               "rejection": clf.operating_point().to_dict(), "results": rows}))
        return
    _print_table(rows, top_k)


def _result_row(path: Path, preds: list, accepted: bool) -> dict[str, Any]:
    """One classify result: {"image", "label" (None when rejected), "accepted", "nearest", "top"}, where
    "nearest" and each of "top" are {"label", "score", "distance"}."""
    top = [{"label": p.label, "score": p.score, "distance": p.distance} for p in preds]
    accepted = bool(accepted)  # numpy's bool is no JSON
    return {"image": str(path), "label": top[0]["label"] if accepted else None, "accepted": accepted,
            "nearest": dict(top[0]), "top": top}


def _print_table(rows: list[dict[str, Any]], top_k: int) -> None:
    names = display_paths([Path(r["image"]) for r in rows])
    decisions = [_shown_decision(r) for r in rows]
    width, label_width = max(5, *map(len, names)), max(20, *map(len, decisions))
    click.echo(f"{'image':<{width}}  {'label':<{label_width}} {'score':>6} {'distance':>9}")
    for name, decision, r in zip(names, decisions, rows):
        best = r["nearest"]
        click.echo(f"{name:<{width}}  {decision:<{label_width}} {best['score']:>6.3f} {best['distance']:>9.3f}")
        for alt in r["top"][1:top_k]:
            click.echo(f"{'':<{width}}    {_shown_label(alt['label']):<{label_width - 2}} {alt['score']:>6.3f} "
                       f"{alt['distance']:>9.3f}")


def _shown_decision(row: dict[str, Any]) -> str:
    """An accepted row's label; a rejected row's "unknown (nearest LABEL, distance D)"."""
    if row["accepted"]:
        return _shown_label(row["label"])
    nearest = row["nearest"]
    return f"unknown (nearest {_shown_label(nearest['label'])}, distance {nearest['distance']:.4g})"


def _shown_label(label: str) -> str:
    """A label for the table: quoted where it could pass for a rejection ("unknown ...") or for a
    quoted label, so a class named "unknown" stays distinguishable from rejected rows."""
    text = printable(label)
    return repr(text) if text == "unknown" or text.startswith(("unknown ", "'", '"')) else text


def display_paths(paths: list[Path]) -> list[str]:
    """Paths as given, or relative to their common folder when that is shorter (same-named files in
    different folders stay apart); escaped for the terminal."""
    given = [str(p) for p in paths]
    try:
        common = os.path.commonpath([str(p.parent) for p in paths])
    except ValueError:  # absolute and relative paths mixed
        common = ""
    shown = given if common in ("", ".") else [str(p.relative_to(common)) for p in paths]
    return [printable(t) for t in (shown if sum(map(len, shown)) < sum(map(len, given)) else given)]


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
def info(path: Path, as_json: bool) -> None:
    """Show what a model (.onnx) or a prototype store (.npz) holds."""
    from edgemeta.runtime.errors import EdgemetaError

    if not path.is_file():
        raise EdgemetaError(f"file not found: {path}")
    with path.open("rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    doc = _store_info(path) if is_zip else _model_info(path)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    for key, value in doc.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else value
        click.echo(f"{key:>18}: {shown}")


def _model_info(path: Path) -> dict[str, Any]:
    from edgemeta.runtime.errors import ModelError
    from edgemeta.runtime.model import baked_classifier_info

    try:
        model = load_model(path)
    except ModelError:
        baked = baked_classifier_info(path)
        if baked is None:
            raise
        return {"kind": "classifier", "path": str(path), **baked}
    m = model.meta
    return {"kind": "model", "path": str(path), "fingerprint": model.fingerprint, "bytes": path.stat().st_size,
            "provider": model.provider, "embedding_dim": m.embedding_dim, "metric": m.metric,
            "threshold": m.threshold, "rejection": m.rejection.to_dict() if m.rejection else None,
            "support_shift": m.support_shift, "format_version": m.format_version,
            "preprocess": m.preprocess.to_dict(),
            "training": m.training, "accuracy": m.accuracy, **_model_summaries(m)}


def _model_summaries(m) -> dict[str, Any]:
    """Held-out accuracy, store sharing and the domain check, in words and in full."""
    from edgemeta.runtime.domain import describe_domain
    from edgemeta.runtime.interchange import describe_sharing

    check = m.accuracy.get("export_check") or {}
    held_out = (f"{check.get('way')}-way {check.get('shot')}-shot {100 * check['accuracy']:.2f}% "
                f"± {100 * check.get('ci95', 0):.2f} on {check.get('held_out')} ({check.get('classes')} classes, "
                f"{check.get('episodes')} episodes)") if check.get("held_out") and "accuracy" in check else "not recorded"
    return {"held_out_accuracy": held_out, "shares_stores": describe_sharing(m), "network": m.network,
            "domain_check": describe_domain(m.domain), "domain": m.domain}


def _store_info(path: Path) -> dict[str, Any]:
    from edgemeta.runtime.store import read_store

    c = read_store(path)
    return {"kind": "store", "path": str(path), "classes": len(c.labels),
            "embedding_dim": int(c.sums.shape[1]), "metric": c.metric, "model_fingerprint": c.model_fingerprint,
            "network_id": c.network_id or None,
            # Labels as stored: JSON escapes control characters itself, and escaping here too would
            # merge distinct labels such as "a\n" and "a\\n".
            "shots": {lab: int(n) for lab, n in zip(c.labels, c.counts)}}
