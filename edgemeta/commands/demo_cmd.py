"""``edgemeta demo``: few-shot recognition of classes the model never saw, on shipped examples."""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import click

from .options import far_option, json_option, load_model, model_option, reject_option

SETS = {
    "omniglot": ("Omniglot characters from the 20 evaluation alphabets (never seen in training)", 1),
    "mnist": ("MNIST digits: a new domain, white ink on black (never trained on)", 5),
}


def load_examples(name: str) -> dict[str, list[Any]]:
    """Shipped example images of one set: {class: [PIL.Image, ...]} in file order."""
    from importlib import resources
    from io import BytesIO

    from PIL import Image

    root = resources.files("edgemeta.models").joinpath("examples", name)
    classes: dict[str, list[Any]] = {}
    for folder in sorted(root.iterdir(), key=lambda t: t.name):
        files = sorted((f for f in folder.iterdir() if f.name.endswith(".png")), key=lambda t: t.name)
        classes[folder.name] = [Image.open(BytesIO(f.read_bytes())) for f in files]
    return classes


def run_set(model, name: str, shots: int, reject: str | None = None, far: float | None = None) -> dict[str, Any]:
    """Enroll ``shots`` drawings per class, classify the rest one at a time under the rejection
    rule (``FewShotClassifier.decide``, as ``classify``); rows, counts and timings."""
    from edgemeta.runtime import FewShotClassifier

    examples = load_examples(name)
    clf = FewShotClassifier(model, reject=reject, far=far)
    for label, images in examples.items():
        clf.enroll(label, images[:shots])
    rows, seconds = [], 0.0
    for label, images in examples.items():
        for i, image in enumerate(images[shots:], start=shots):
            start = time.perf_counter()
            preds, accepted = clf.decide(image, top_k=1)
            seconds += time.perf_counter() - start
            best = preds[0][0]
            rows.append(
                {
                    "query": f"{label}/{i}.png",
                    "true": label,
                    "predicted": best.label if accepted[0] else None,
                    "nearest": best.label,
                    "score": best.score,
                    "distance": best.distance,
                    "accepted": accepted[0],
                    "correct": accepted[0] and best.label == label,
                    "image": image,
                }
            )
    correct = sum(r["correct"] for r in rows)
    unknown = sum(not r["accepted"] for r in rows)
    return {
        "set": name,
        "about": SETS[name][0],
        "classes": len(examples),
        "shots": shots,
        "rows": rows,
        "accuracy": correct / len(rows),
        "unknown": unknown,
        "nearest_right": sum(r["nearest"] == r["true"] for r in rows),
        "rejection": clf.operating_point().to_dict(),
        "ms_per_image": 1e3 * seconds / len(rows),
    }


def contact_sheet(results: list[dict[str, Any]], path: Path, cell: int = 84) -> Path:
    """One row per set of query thumbnails, each captioned with its prediction (green right, red wrong)."""
    from PIL import Image, ImageDraw

    columns = 10
    caption = 14
    rows_needed = [(len(r["rows"]) + columns - 1) // columns for r in results]
    height = sum(n * (cell + caption) + 18 for n in rows_needed)
    sheet = Image.new("RGB", (columns * cell, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for result, n in zip(results, rows_needed):
        draw.text(
            (4, y + 3),
            f"{result['set']}: {result['classes']}-way {result['shots']}-shot, "
            f"accuracy {100 * result['accuracy']:.0f}%",
            fill="black",
        )
        y += 18
        for i, row in enumerate(result["rows"]):
            x0, y0 = (i % columns) * cell, y + (i // columns) * (cell + caption)
            thumb = row["image"].convert("L").resize((cell - 8, cell - 8))
            sheet.paste(thumb.convert("RGB"), (x0 + 4, y0 + 2))
            color = (0, 140, 0) if row["correct"] else (200, 0, 0)
            draw.rectangle([x0 + 2, y0, x0 + cell - 3, y0 + cell - 5], outline=color, width=2)
            draw.text((x0 + 3, y0 + cell - 4), (row["predicted"] or "unknown")[:13], fill=color)
        y += n * (cell + caption)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _print_results(results: list[dict[str, Any]], model, sheet: Path) -> None:
    click.echo(f"model: {model.path.name} ({model.provider}, {model.embedding_dim}-d embedding)")
    for r in results:
        click.echo(
            f"\n{r['about']}\n{r['classes']} classes, {r['shots']} shot(s) each; classifying the other drawings:"
        )
        click.echo(f"  {'query':<24} {'true class':<18} {'predicted':<18} {'score':>6}")
        for row in r["rows"]:
            mark = (
                ""
                if row["correct"]
                else f"  <- unknown (nearest {row['nearest']})"
                if not row["accepted"]
                else "  <- wrong"
            )
            click.echo(
                f"  {row['query']:<24} {row['true']:<18} {row['predicted'] or 'unknown':<18} {row['score']:>6.3f}{mark}"
            )
        right, n = sum(x["correct"] for x in r["rows"]), len(r["rows"])
        click.echo(
            f"rejection: --reject {r['rejection']['reject']}: {r['unknown']}/{n} answered 'unknown' "
            f"(nearest class right for {r['nearest_right']}/{n})"
        )
        click.echo(
            f"accuracy: {right}/{n} = {100 * r['accuracy']:.1f}%   "
            f"latency: {r['ms_per_image']:.3f} ms per image (decode + embed + nearest prototype)"
        )
    click.echo(f"\ncontact sheet: {sheet}")


@click.command()
@model_option()
@click.option(
    "--shots",
    type=click.IntRange(1, 5),
    default=None,
    help="Examples enrolled per class (default: 1 for Omniglot, 5 for MNIST).",
)
@click.option(
    "--set", "sets", type=click.Choice(sorted(SETS)), multiple=True, help="Example set(s) to run (default: all)."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the contact sheet PNG (default: in the temp folder).",
)
@reject_option()
@far_option()
@json_option()
def demo(
    model_path: Path | None,
    shots: int | None,
    sets: tuple[str, ...],
    out: Path | None,
    reject: str | None,
    far: float | None,
    as_json: bool,
) -> None:
    """Learn new classes from a few shipped examples each and classify the rest."""
    model = load_model(model_path)
    results = [run_set(model, name, shots or SETS[name][1], reject, far) for name in (sets or tuple(SETS))]
    sheet = contact_sheet(results, out or Path(tempfile.gettempdir()) / "edgemeta-demo.png")
    if as_json:
        for r in results:
            for row in r["rows"]:
                row.pop("image")
        click.echo(json.dumps({"model": str(model.path), "contact_sheet": str(sheet), "results": results}))
        return
    _print_results(results, model, sheet)
