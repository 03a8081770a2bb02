"""``edgemeta export`` and ``edgemeta bake`` (torch and onnx are imported inside the commands)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import click

from .options import (
    Decorator,
    far_option,
    finite_threshold,
    json_option,
    load_model,
    model_option,
    reject_option,
    split_option,
    store_option,
)


def _threshold_option(value: str) -> float | str | None:
    if value.lower() == "none":
        return None
    if value.lower() == "auto":
        return "auto"
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise click.ClickException(
            f"--threshold takes 'auto', 'none' or a positive finite squared distance, got {value!r}"
        )
    return number


def _log_to_stderr() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("edgemeta.export",):
        logger = logging.getLogger(name)
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)


@click.command()
@click.argument("run", metavar="RUN_DIR_OR_CHECKPOINT", type=click.Path(path_type=Path))
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="The ONNX model file to write.")
@click.option("--int8", is_flag=True, help="Static int8 quantization (QDQ, per-channel), verified and measured.")
@click.option("--force", is_flag=True, help="With --int8: write the model even if it loses over 1 point of accuracy.")
@click.option("--data", default=None, help="Verification/calibration data (default: the run's training source).")
@split_option(
    "Omniglot split of --data to verify and measure on: {splits} (default: the classes the run held out from training)."
)
@click.option(
    "--threshold",
    default="auto",
    show_default=True,
    help="Rejection threshold: 'auto' (accepts 95% of genuine queries), 'none' or a squared distance.",
)
@click.option(
    "--exporter",
    type=click.Choice(["auto", "dynamo", "legacy"]),
    default="auto",
    show_default=True,
    help="torch.onnx exporter; auto tries dynamo, then legacy.",
)
@click.option("--episodes", type=click.IntRange(1), default=200, show_default=True, help="Verification episodes.")
@click.option(
    "--support-shift",
    type=click.IntRange(0, 3),
    default=1,
    show_default=True,
    help="Recorded in the model: the runtime embeds each enrolled image as the mean over its shifts "
    "by up to this many pixels ((2N+1)^2 views; queries are embedded once). 0: as they are.",
)
@json_option("Print the report as one JSON document.")
def export(
    run: Path,
    out: Path,
    int8: bool,
    force: bool,
    data: str | None,
    split: str | None,
    threshold: str,
    exporter: str,
    episodes: int,
    support_shift: int,
    as_json: bool,
) -> None:
    """Export a training run (its best.pt, else last.pt) or a checkpoint to a verified ONNX model."""
    from .extras import require_extra

    require_extra("edgemeta export", "export")
    from edgemeta.export.pipeline import ExportOptions, run_export

    _log_to_stderr()
    opts = ExportOptions(
        out=out,
        int8=int8,
        force=force,
        data=data,
        split=split,
        threshold=_threshold_option(threshold),
        exporter=exporter,
        episodes=episodes,
        support_shift=support_shift,
    )
    report = run_export(run, opts, say=lambda m: click.echo(m, err=True))
    if as_json:
        click.echo(json.dumps(report, default=str))
        return
    click.echo(
        f"wrote {report['out']} ({report['bytes']} bytes, {'int8' if int8 else 'fp32'}, {report['exporter']} exporter, opset {report['opset']})"
    )
    click.echo(
        f"parity: max abs diff {report['parity']['max_abs_diff']:.3g}; "
        f"5-way 1-shot accuracy {100 * report['accuracy']['accuracy']:.2f}% on {report['data']['data']}"
    )
    if int8:
        q = report["int8"]
        click.echo(
            f"int8: accuracy change {q['accuracy']['change_points']:+.2f} points, "
            f"throughput x{q['throughput_batch64']['ratio']:.2f} vs fp32 at batch 64"
        )
    how = report["threshold_method"]
    if report["threshold"] is None:
        click.echo(f"rejection: none ({how.get('reason', how['method'])})")
    elif how["method"] == "user":
        click.echo(f"rejection threshold: {report['threshold']:.4g} (given)")
    else:
        click.echo(
            f"rejection rule calibrated by {how['method']} on {how.get('classes')} held-out classes "
            f"(edgemeta info shows it; legacy threshold {report['threshold']:.4g})"
        )


def _bake_input_option() -> Decorator:
    """``--input``: one of the baked classifier inputs ``BAKED_INPUTS``."""
    from edgemeta.runtime.metadata import BAKED_INPUTS

    return click.option(
        "--input",
        "input_kind",
        type=click.Choice(BAKED_INPUTS),
        default="normalized",
        show_default=True,
        help="What the graph takes: the model's normalized float32 [N, C, H, W], or decoded RGBA pixels "
        "uint8 [N, H, W, 4] of any size (the whole preprocessing inside the graph).",
    )


@click.command()
@model_option("-m", help="Embedding model (default: the shipped model).")
@store_option("-s", help="Prototype store made with that model.")
@click.option("--out", "-o", required=True, type=click.Path(path_type=Path), help="The classifier ONNX file to write.")
@reject_option()
@far_option()
@click.option(
    "--threshold",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    callback=finite_threshold,
    help="One squared distance for the 'accepted' output, every class alike (overrides --reject).",
)
@_bake_input_option()
@json_option("Print the report as one JSON document.")
def bake(
    model_path: Path | None,
    store_path: Path,
    out: Path,
    reject: str | None,
    far: float | None,
    threshold: float | None,
    input_kind: str,
    as_json: bool,
) -> None:
    """Bake a model and a store into one ONNX classifier: images in, scores and best index out."""
    from .extras import require_extra

    require_extra("edgemeta bake", "bake")  # onnx only: baking never imports torch
    from edgemeta.export.bake import bake as bake_file

    model = load_model(model_path)
    report = bake_file(model, store_path, out, reject=reject, far=far, threshold=threshold, input_kind=input_kind)
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(
        f"wrote {report['out']} ({report['bytes']} bytes): {report['classes']} classes, {input_kind} input, "
        f"verified against the runtime on {report['verified_images']} images "
        f"(max score diff {report['max_score_diff']:.2g})"
    )
