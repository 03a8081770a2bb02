"""``edgemeta eval``: N-way K-shot accuracy with a 95% CI, through the ONNX runtime (never torch)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from .options import (
    far_option,
    finite_threshold,
    json_option,
    load_model,
    model_option,
    query_views_option,
    reject_option,
    split_option,
    threads_option,
)


@click.command("eval")
@model_option()
@click.option(
    "--data",
    "data",
    required=True,
    help="omniglot | mnist | mnist-train (fetched once into EDGEMETA_CACHE), or a path: Omniglot npz/folders/zips, MNIST IDX, class folders.",
)
@split_option("Omniglot split: {splits}.")
@click.option("--way", default=5, show_default=True, type=int, help="Classes per episode (N).")
@click.option("--shot", default=1, show_default=True, type=int, help="Support examples per class (K).")
@click.option("--query", default=15, show_default=True, type=int, help="Queries per class (Q).")
@click.option("--episodes", default=1000, show_default=True, type=int, help="Episodes to average over.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the episode sampler.")
@click.option("--within-alphabet", is_flag=True, help="Every class of an episode from one alphabet (Omniglot).")
@click.option(
    "--rotations/--no-rotations",
    default=None,
    help="Omniglot rotations as extra classes (default: on for vinyals-test, as the paper evaluates).",
)
@click.option(
    "--unknown",
    default=0,
    show_default=True,
    type=int,
    help="Open set: queries from this many extra classes that are not enrolled.",
)
@click.option(
    "--threshold",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    callback=finite_threshold,
    help="One squared distance above which a query is rejected, for every class alike "
    "(default: the model's calibrated rule at --reject/--far).",
)
@reject_option()
@far_option()
@click.option(
    "--support-shift",
    type=click.IntRange(0, 3),
    default=None,
    help="Embed support images as the mean over their shifts by up to this many pixels, as "
    "enroll does (default: the model's support_shift; 0: as they are).",
)
@query_views_option(
    "Embed each query as the mean over this many 1-pixel shifts, as classify --query-views "
    "does (test-time augmentation: that many network evaluations per query)."
)
@threads_option()
@click.option("--batch-size", default=512, show_default=True, type=int, help="Images per runtime call while embedding.")
@json_option()
def eval_command(
    model_path: Path | None,
    data: str,
    split: str | None,
    way: int,
    shot: int,
    query: int,
    episodes: int,
    seed: int,
    within_alphabet: bool,
    rotations: bool | None,
    unknown: int,
    threshold: float | None,
    reject: str | None,
    far: float | None,
    support_shift: int | None,
    query_views: str,
    threads: int | None,
    batch_size: int,
    as_json: bool,
) -> None:
    """N-way K-shot episodes on DATA through the runtime: mean accuracy and 95% CI."""
    from edgemeta.lab.datasets import load_source
    from edgemeta.lab.evaluation import (
        EpisodeSampler,
        EpisodeSpec,
        embed_all,
        embed_all_queries,
        embed_all_support,
        evaluate,
    )
    from edgemeta.runtime.errors import DataError
    from edgemeta.runtime.rejection import operating_point

    if episodes < 1 or batch_size < 1:
        raise DataError("--episodes and --batch-size must be at least 1")
    spec = EpisodeSpec(way, shot, query, unknown, within_alphabet)
    model = load_model(model_path, threads=threads)
    rejection = operating_point(model.meta.rejection, model.meta.threshold, reject, far, threshold)
    if split == "vinyals-test" and rotations is None:
        rotations = True
    started = time.perf_counter()
    fs = load_source(data, model.meta.preprocess, split=split, rotations=rotations)
    EpisodeSampler(fs.targets, spec, fs.class_groups)  # fail on impossible episodes before embedding
    shift = model.meta.support_shift if support_shift is None else support_shift
    views = int(query_views)
    with _progress(len(fs.targets) * (2 if shift or views > 1 else 1), episodes) as bar:
        emb = embed_all_queries(model, fs.images, views, batch_size, bar.update)
        support = None
        if shift or views > 1:  # support images as enroll embeds them, not as the queries
            support = (
                embed_all_support(model, fs.images, shift, batch_size, bar.update)
                if shift
                else embed_all(model, fs.images, batch_size, bar.update)
            )
        result = evaluate(
            emb,
            fs.targets,
            spec,
            episodes,
            seed,
            groups=fs.class_groups,
            metric=model.meta.metric,
            rejection=rejection,
            progress=bar.update,
            support_emb=support,
        )
    report = result.to_dict()
    report.update(
        model=str(model.path),
        data=str(data),
        split=split,
        rotations=rotations,
        support_shift=shift,
        query_views=views,
        images=int(len(fs.targets)),
        classes=int(fs.num_classes),
        provider=model.provider,
        seconds=round(time.perf_counter() - started, 3),
    )
    if as_json:
        click.echo(json.dumps(report))
    else:
        click.echo(_format(report))


def _progress(images: int, episodes: int) -> Any:
    """A progress bar on stderr when it is a terminal, else one log line."""
    if sys.stderr.isatty():
        return click.progressbar(
            length=images + episodes, label=f"{images} images, {episodes} episodes", file=sys.stderr, show_eta=True
        )
    click.echo(f"eval: embedding {images} images, then {episodes} episodes", err=True)
    return contextlib.nullcontext(_NoBar())


class _NoBar:
    def update(self, _n: int) -> None:
        pass


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _format(r: dict[str, Any]) -> str:
    """The readable report."""
    where = r["data"] + (f" ({r['split']})" if r["split"] else "")
    mode = " within alphabet" if r["within_alphabet"] else ""
    lines = [
        f"model    {r['model']}",
        f"data     {where}: {r['images']} images, {r['classes']} classes ({r['classes_available']} usable)",
        f"task     {r['way']}-way {r['shot']}-shot{mode}, {r['query']} queries per class, "
        f"{r['episodes']} episodes, seed {r['seed']}, support shift {r['support_shift']} px, query views {r['query_views']}",
        f"accuracy {_pct(r['accuracy'])} +- {_pct(r['ci95'])} (95% CI)",
    ]
    if r["unknown"]:
        lines.append(f"open set {r['unknown']} unknown classes per episode: AUROC {r['auroc']:.4f}")
    if r["threshold"] is not None:
        lines.append(
            f"at rejection {r['rejection']['reject']} (median limit {r['threshold']:.4g} for {r['shot']}-shot "
            f"classes among {r['way']}): accuracy {_pct(r['open_accuracy'])} +- "
            f"{_pct(r['open_ci95'])}, false accepts {_pct(r['false_accept_rate'])}, "
            f"false rejects {_pct(r['false_reject_rate'])}"
        )
    elif r["unknown"]:
        lines.append(
            "no rejection (--reject off, or the model has no rule; pass --threshold) for accept/reject figures"
        )
    lines.append(f"time     {r['seconds']:.1f} s on {r['provider']}")
    return "\n".join(lines)
