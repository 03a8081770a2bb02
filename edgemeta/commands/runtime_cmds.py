"""``enroll``, ``classify`` and ``info``: the runtime's commands (numpy + onnxruntime only)."""

from __future__ import annotations

import json
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
threads_option = click.option("--threads", type=click.IntRange(min=1), default=None, help="onnxruntime intra-op threads.")
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


def printable(text: str) -> str:
    """Labels are data: escape control characters before they reach a terminal."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def _store_or_new(store_path: Path, model):
    from edgemeta.runtime.classifier import FewShotClassifier

    return FewShotClassifier.load(store_path, model) if store_path.exists() else FewShotClassifier(model)


def _enroll_folder(clf, folder: Path) -> dict[str, int]:
    from edgemeta.runtime.errors import ImageError

    classes = sorted(d for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise ImageError(f"no class sub-folders in {folder}")
    added: dict[str, int] = {}
    for d in classes:  # the store file is written only after every class embedded
        files = expand_images([d])
        clf.enroll(d.name, [str(p) for p in files])
        added[d.name] = len(files)
    return added


@click.command()
@model_option
@store_option
@click.option("--folder", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Enroll every sub-folder of this folder as a class named after it.")
@threads_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.argument("label", required=False)
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
def enroll(model_path: Path | None, store_path: Path, folder: Path | None, threads: int | None,
           as_json: bool, label: str | None, images: tuple[Path, ...]) -> None:
    """Add IMAGES as examples of class LABEL to the store (created if missing).

    Enrolling a label again adds more shots to it. A folder among IMAGES stands for the
    images inside it; --folder DIR enrolls each sub-folder of DIR as a class.
    """
    from edgemeta.runtime.store import check_label
    from edgemeta.runtime.errors import EdgemetaError

    if folder is None and (label is None or not images):
        raise EdgemetaError("enroll needs a LABEL and at least one IMAGE (or --folder DIR)")
    if folder is not None and (label is not None or images):
        raise EdgemetaError("give either --folder DIR or LABEL IMAGE..., not both")
    if label is not None:
        check_label(label)
    model = load_model(model_path, threads)
    clf = _store_or_new(store_path, model)
    if folder is not None:
        added = _enroll_folder(clf, folder)
    else:
        files = expand_images(images)
        clf.enroll(label, [str(p) for p in files])
        added = {label: len(files)}
    clf.save(store_path)
    counts = clf.counts()
    if as_json:
        click.echo(json.dumps({"store": str(store_path), "added": added, "shots": {k: counts[k] for k in added},
                               "classes": len(counts)}))
        return
    for lab, n in added.items():
        click.echo(f"enrolled {n} image(s) as {printable(lab)!r}: {counts[lab]} shot(s) in all")
    click.echo(f"store {store_path}: {len(counts)} class(es)")


@click.command()
@model_option
@store_option
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Candidates per image.")
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Squared distance above which an image is 'unknown' (default: the model's).")
@query_views_option
@threads_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document.")
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
def classify(model_path: Path | None, store_path: Path, top_k: int, threshold: float | None, query_views: str,
             threads: int | None, as_json: bool, images: tuple[Path, ...]) -> None:
    """Classify IMAGES against the classes in the store."""
    from edgemeta.runtime.classifier import FewShotClassifier
    from edgemeta.runtime.errors import EdgemetaError, StoreError

    if not images:
        raise EdgemetaError("classify needs at least one IMAGE")
    if not store_path.exists():
        raise StoreError(f"store not found: {store_path} (enroll some classes first)")
    model = load_model(model_path, threads)
    clf = FewShotClassifier.load(store_path, model, query_views=int(query_views))
    if len(clf) == 0:
        raise StoreError(f"store {store_path} has no classes (enroll some first)")
    files = expand_images(images)
    predictions = clf.predict([str(p) for p in files], top_k=top_k)
    limit = clf.effective_threshold(threshold)
    rows = [_result_row(f, preds, limit) for f, preds in zip(files, predictions)]
    if as_json:
        click.echo(json.dumps({"model": str(model.path), "store": str(store_path), "threshold": limit, "results": rows}))
        return
    _print_table(rows, top_k)


def _result_row(path: Path, preds: list, limit: float | None) -> dict[str, Any]:
    unknown = limit is not None and preds[0].distance > limit
    return {
        "image": str(path),
        "label": None if unknown else preds[0].label,
        "top": [{"label": p.label, "score": p.score, "distance": p.distance} for p in preds],
    }


def _print_table(rows: list[dict[str, Any]], top_k: int) -> None:
    width = max(5, *(len(printable(Path(r["image"]).name)) for r in rows))
    click.echo(f"{'image':<{width}}  {'label':<20} {'score':>6} {'distance':>9}")
    for r in rows:
        best = r["top"][0]
        shown = "unknown" if r["label"] is None else printable(r["label"])
        click.echo(f"{printable(Path(r['image']).name):<{width}}  {shown:<20} {best['score']:>6.3f} {best['distance']:>9.3f}")
        for alt in r["top"][1:top_k]:
            click.echo(f"{'':<{width}}    {printable(alt['label']):<18} {alt['score']:>6.3f} {alt['distance']:>9.3f}")


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
    model = load_model(path)
    m = model.meta
    return {"kind": "model", "path": str(path), "fingerprint": model.fingerprint, "bytes": path.stat().st_size,
            "provider": model.provider, "embedding_dim": m.embedding_dim, "metric": m.metric,
            "threshold": m.threshold, "support_shift": m.support_shift, "format_version": m.format_version,
            "preprocess": m.preprocess.to_dict(),
            "training": m.training, "accuracy": m.accuracy}


def _store_info(path: Path) -> dict[str, Any]:
    from edgemeta.runtime.store import read_store

    c = read_store(path)
    return {"kind": "store", "path": str(path), "classes": len(c.labels),
            "embedding_dim": int(c.sums.shape[1]), "metric": c.metric, "model_fingerprint": c.model_fingerprint,
            # Labels as stored: JSON escapes control characters itself, and escaping here too would
            # merge distinct labels such as "a\n" and "a\\n".
            "shots": {lab: int(n) for lab, n in zip(c.labels, c.counts)}}
