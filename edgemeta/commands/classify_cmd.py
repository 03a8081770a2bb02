"""``classify``: images against a prototype store, as a table or one JSON document (numpy + onnxruntime only)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from .options import (
    domain_flags,
    expand_images,
    far_option,
    finite_threshold,
    json_option,
    load_model,
    model_option,
    printable,
    query_views_option,
    reject_option,
    store_option,
    threads_option,
)


@click.command()
@model_option()
@store_option()
@click.option("--top-k", type=click.IntRange(min=1), default=1, show_default=True, help="Candidates per image.")
@click.option(
    "--threshold",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    callback=finite_threshold,
    help="One squared distance above which an image is 'unknown', for every class alike "
    "(overrides --reject and the model's calibrated rule).",
)
@reject_option()
@far_option()
@query_views_option(
    "Embed each image as the mean over this many 1-pixel shifts (test-time augmentation: more "
    "accurate, that many network evaluations per image)."
)
@threads_option()
@json_option()
@click.argument("images", nargs=-1, type=click.Path(path_type=Path))
def classify(
    model_path: Path | None,
    store_path: Path,
    top_k: int,
    threshold: float | None,
    reject: str | None,
    far: float | None,
    query_views: str,
    threads: int | None,
    as_json: bool,
    images: tuple[Path, ...],
) -> None:
    """Classify IMAGES against the classes in the store."""
    from edgemeta.runtime.classifier import FewShotClassifier
    from edgemeta.runtime.errors import EdgemetaError, StoreError

    if not images:
        raise EdgemetaError("classify needs at least one IMAGE")
    if not store_path.exists():
        raise StoreError(f"store not found: {store_path} (enroll some classes first)")
    model = load_model(model_path, threads=threads)
    clf = FewShotClassifier.load(
        store_path, model, query_views=int(query_views), threshold=threshold, reject=reject, far=far
    )
    if len(clf) == 0:
        raise StoreError(f"store {store_path} has no classes (enroll some first)")
    files = expand_images(images)
    predictions, accepted = clf.decide([str(p) for p in files], top_k=top_k)
    rows = [_result_row(f, preds, ok) for f, preds, ok in zip(files, predictions, accepted)]
    for row, flag in zip(rows, domain_flags(model, files)):
        row["out_of_domain"] = bool(flag)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "model": str(model.path),
                    "store": str(store_path),
                    "threshold": threshold,
                    "rejection": clf.operating_point().to_dict(),
                    "results": rows,
                }
            )
        )
        return
    _print_table(rows, top_k)


def _result_row(path: Path, preds: list, accepted: bool) -> dict[str, Any]:
    """One classify result: {"image", "label" (None when rejected), "accepted", "nearest", "top"}, where
    "nearest" and each of "top" are {"label", "score", "distance"}."""
    top = [{"label": p.label, "score": p.score, "distance": p.distance} for p in preds]
    accepted = bool(accepted)  # numpy's bool is no JSON
    return {
        "image": str(path),
        "label": top[0]["label"] if accepted else None,
        "accepted": accepted,
        "nearest": dict(top[0]),
        "top": top,
    }


def _print_table(rows: list[dict[str, Any]], top_k: int) -> None:
    names = display_paths([Path(r["image"]) for r in rows])
    decisions = [_shown_decision(r) for r in rows]
    width, label_width = max(5, *map(len, names)), max(20, *map(len, decisions))
    click.echo(f"{'image':<{width}}  {'label':<{label_width}} {'score':>6} {'distance':>9}")
    for name, decision, r in zip(names, decisions, rows):
        best = r["nearest"]
        click.echo(f"{name:<{width}}  {decision:<{label_width}} {best['score']:>6.3f} {best['distance']:>9.3f}")
        for alt in r["top"][1:top_k]:
            click.echo(
                f"{'':<{width}}    {_shown_label(alt['label']):<{label_width - 2}} {alt['score']:>6.3f} "
                f"{alt['distance']:>9.3f}"
            )


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
