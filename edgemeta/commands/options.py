"""The options several commands share, each defined once, and the helpers that go with them.

Choices come from the constants that define them (the query views, the rejection operating
points, the Omniglot splits, the store lock's timeout). This module is imported only when a
command runs (``edgemeta --help`` lists the commands from ``cli.LAZY_COMMANDS`` alone), so the
constants' modules are imported inside the option functions, each at most for the commands
that use it: the device commands never import the workstation layer's data sets.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def model_option(*aliases: str, help: str = "ONNX model file (default: the shipped model).") -> Decorator:
    """``--model`` as ``model_path``: a file, or None for the shipped default model."""
    return click.option(
        "--model", *aliases, "model_path", type=click.Path(dir_okay=False, path_type=Path), default=None, help=help
    )


def store_option(*aliases: str, help: str = "Prototype store file (.npz).") -> Decorator:
    """``--store`` as ``store_path`` (required)."""
    return click.option(
        "--store", *aliases, "store_path", type=click.Path(dir_okay=False, path_type=Path), required=True, help=help
    )


def threads_option(help: str = "onnxruntime intra-op threads.") -> Decorator:
    return click.option("--threads", type=click.IntRange(min=1), default=None, help=help)


def json_option(help: str = "Print one JSON document.") -> Decorator:
    return click.option("--json", "as_json", is_flag=True, help=help)


def query_views_option(help: str) -> Decorator:
    """``--query-views`` as a string, one of the view counts of ``QUERY_VIEW_OFFSETS``."""
    from edgemeta.runtime.preprocess import QUERY_VIEW_OFFSETS

    return click.option(
        "--query-views",
        type=click.Choice([str(v) for v in sorted(QUERY_VIEW_OFFSETS)]),
        default="1",
        show_default=True,
        help=help,
    )


def reject_option() -> Decorator:
    """``--reject``: one of the rejection rule's ``OPERATING_POINTS``; None: the default one."""
    from edgemeta.runtime.rejection import OPERATING_POINTS

    return click.option(
        "--reject",
        type=click.Choice(OPERATING_POINTS),
        default=None,
        help="When an image is 'unknown' (runtime/rejection.py): strict (about 1% false accepts on the model's "
        "calibration classes), balanced (false rejects = false accepts there; the default), off (never).",
    )


def far_option() -> Decorator:
    return click.option(
        "--far",
        type=float,
        default=None,
        help="Instead of --reject: the target false-accept rate, in (0, 1), as calibrated for the model.",
    )


def lock_timeout_option() -> Decorator:
    from edgemeta.runtime.store_lock import DEFAULT_LOCK_TIMEOUT

    return click.option(
        "--lock-timeout",
        type=click.FloatRange(min=0),
        default=DEFAULT_LOCK_TIMEOUT,
        show_default=True,
        help="Seconds to wait while other processes write the store, then give up.",
    )


def split_option(help: str) -> Decorator:
    """``--split``: one of the Omniglot ``SPLITS`` or None; ``help`` may name them as ``{splits}``.
    A wrong name is a one-line error (exit 1), the same as ``load_source`` gives."""
    from edgemeta.lab.datasets import SPLITS, check_split

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        return check_split(value)

    return click.option("--split", default=None, callback=check, help=help.format(splits=" | ".join(SPLITS)))


def finite_threshold(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click callback for --threshold: FloatRange lets nan (which turns rejection off) and inf through."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"must be a finite squared distance, got {value}")
    return value


def load_model(model_path: Path | str | None, **options: Any) -> Any:
    """The ``EmbeddingModel`` of ``--model`` (None: the shipped default); ``options`` such as
    ``threads`` go to its constructor."""
    from edgemeta.runtime.model import EmbeddingModel

    return EmbeddingModel.default(**options) if model_path is None else EmbeddingModel(model_path, **options)


def expand_images(paths: tuple[Path, ...] | list[Path]) -> list[Path]:
    """Paths as given; a folder stands for the image files directly inside it (sorted)."""
    from edgemeta.runtime.errors import ImageError
    from edgemeta.runtime.images import IMAGE_SUFFIXES

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


def is_image_file(text: str) -> bool:
    """Whether ``text`` names an existing file with an image suffix."""
    from edgemeta.runtime.images import IMAGE_SUFFIXES

    try:
        return Path(text).suffix.lower() in IMAGE_SUFFIXES and Path(text).is_file()
    except (OSError, ValueError):  # names too long or not encodable are no files
        return False


def domain_flags(model: Any, files: list[Path]) -> Any:
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
