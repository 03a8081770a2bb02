"""``edgemeta train``: episodic meta-training (torch imported inside the command)."""

from __future__ import annotations

import json
import os
import sys

import click

from .options import Decorator, json_option, split_option


def _floats(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float]:
    if value is None:
        return []
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("give one number per channel, comma-separated, such as 0.5,0.5,0.5") from None


def _shots(ctx: click.Context, param: click.Parameter, value: str) -> list[int]:
    try:
        shots = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise click.BadParameter("give an integer or a comma-separated list such as 1,5") from None
    if not shots or min(shots) < 1:
        raise click.BadParameter("shots must be positive integers")
    return shots


def _aspect_option() -> Decorator:
    """``--aspect``: one of the runtime's ``ASPECTS`` (imported when the command loads, as options.py does)."""
    from edgemeta.runtime.aspect import ASPECTS

    return click.option(
        "--aspect",
        default=None,
        type=click.Choice(ASPECTS),
        help="How an image of another aspect ratio is fitted to the square input (recorded in the model): "
        "stretch, center_crop or letterbox (pad)  [default: --init's model; else letterbox for colour, "
        "stretch for grayscale].",
    )


@click.command()
@click.option(
    "--data",
    "data",
    default=None,
    help="omniglot | mnist | mnist-train (fetched once into EDGEMETA_CACHE), or a path: Omniglot npz folder/file, official folders or zips, MNIST IDX, or a class-per-folder tree (with --resume: the run's own).",
)
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(file_okay=False),
    help="Run folder (checkpoints, config.json, metrics.jsonl, curves.png).",
)
@split_option("Omniglot split: {splits} (default: background).")
@click.option(
    "--way",
    default=None,
    type=click.IntRange(2),
    help="Classes per training episode  [default: 60, or the training classes with enough examples when fewer].",
)
@click.option(
    "--shot",
    default="1,5",
    show_default=True,
    callback=_shots,
    help="Support examples per class; a list cycles step by step.",
)
@click.option("--query", default=5, show_default=True, type=click.IntRange(1), help="Query examples per class.")
@click.option(
    "--episodes",
    default=None,
    type=click.IntRange(1),
    help="Training episodes in all  [default: 40000; with --resume: the run's own].",
)
@click.option(
    "--episodes-per-step",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Episodes batched into one optimizer step, per process under torchrun (0: 8 on CUDA, 1 on CPU).",
)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option(
    "--precision",
    default="auto",
    show_default=True,
    type=click.Choice(["auto", "fp32", "bf16"]),
    help="auto: bf16 autocast on CUDA, fp32 on the CPU.",
)
@click.option("--compile/--no-compile", "compile_", default=False, show_default=True, help="torch.compile the network.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--resume",
    is_flag=True,
    help="Continue from RUN_DIR/last.pt, with any number of processes (its saved config wins, except a given --episodes, --device and a given --episodes-per-step).",
)
@click.option(
    "--overwrite",
    is_flag=True,
    help="Start a new run in an --out that already holds one (its checkpoints and metrics are removed first); without it or --resume such an --out is refused.",
)
@click.option(
    "--checkpoint-minutes",
    default=1.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Save last.pt every this many minutes of training, besides at validations (0: only at validations). Ctrl-C or SIGTERM saves it too, after the current step, and exits 130 / 143.",
)
@click.option(
    "--init",
    "init",
    default=None,
    type=click.Path(exists=True),
    help="Start from the weights of this checkpoint, run folder (its best.pt) or exported edgemeta .onnx file (fp32; e.g. to fine-tune the shipped model); optimizer, schedule and episode count start afresh; --size may differ.",
)
@click.option(
    "--backbone", default="conv4", show_default=True, type=click.Choice(["conv4", "resnet12", "mobilenet_v3_small"])
)
@click.option(
    "--channels",
    default=None,
    type=click.Choice(["1", "3"]),
    help="1: grayscale, 3: RGB  [default: --init's model; else 3 for a class-per-folder set of colour images, else 1].",
)
@click.option(
    "--mean",
    default=None,
    callback=_floats,
    help="Per-channel mean on the 0..1 scale, comma-separated  [default: colour: the training images'; gray: 0].",
)
@click.option(
    "--std",
    default=None,
    callback=_floats,
    help="Per-channel std on the 0..1 scale, comma-separated  [default: colour: the training images'; gray: 1].",
)
@click.option("--size", default=28, show_default=True, type=click.IntRange(8, 512), help="Input size (square).")
@_aspect_option()
@click.option("--metric", default="sqeuclidean", show_default=True, type=click.Choice(["sqeuclidean", "cosine"]))
@click.option("--lr", default=1e-3, show_default=True, type=click.FloatRange(0, min_open=True))
@click.option(
    "--lr-step",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Episodes between learning-rate halvings (0: episodes / 8).",
)
@click.option(
    "--lr-schedule",
    default="episodes",
    show_default=True,
    type=click.Choice(["episodes", "time"]),
    help="Halve the learning rate every --lr-step episodes, or at every eighth of --time-limit.",
)
@click.option(
    "--augment",
    default="full",
    show_default=True,
    type=click.Choice(["none", "affine", "stroke", "full"]),
    help="On-device augmentation: affine, stroke width, both (colour runs: colour jitter without hue shift instead of stroke width).",
)
@click.option(
    "--rotations/--no-rotations",
    default=True,
    show_default=True,
    help="Omniglot rotations by 90/180/270 as extra classes.",
)
@click.option(
    "--val-every", default=1000, show_default=True, type=click.IntRange(1), help="Episodes between validations."
)
@click.option("--val-episodes", default=600, show_default=True, type=click.IntRange(1))
@click.option("--test-way", default=5, show_default=True, type=click.IntRange(2), help="Validation way.")
@click.option("--test-shot", default=1, show_default=True, type=click.IntRange(1), help="Validation shot.")
@click.option(
    "--patience",
    default=0,
    show_default=True,
    type=click.IntRange(0),
    help="Stop after this many validations without improvement (0: never).",
)
@click.option(
    "--time-limit",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Seconds of training before a last validation and stop (0: none).",
)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@json_option("Print the summary as JSON on stdout.")
def train(
    data: str | None,
    out: str,
    split: str | None,
    way: int | None,
    shot: list[int],
    query: int,
    episodes: int | None,
    episodes_per_step: int,
    device: str,
    precision: str,
    compile_: bool,
    seed: int,
    resume: bool,
    init: str | None,
    backbone: str,
    size: int,
    aspect: str | None,
    channels: str | None,
    mean: list[float],
    std: list[float],
    metric: str,
    lr: float,
    lr_step: int,
    augment: str,
    rotations: bool,
    val_every: int,
    val_episodes: int,
    test_way: int,
    test_shot: int,
    patience: int,
    time_limit: float,
    lr_schedule: str,
    no_progress: bool,
    as_json: bool,
    overwrite: bool,
    checkpoint_minutes: float,
) -> None:
    """Meta-train an embedding with the prototypical loss on N-way K-shot episodes.

    Ctrl-C (SIGINT) or SIGTERM saves RUN_DIR/last.pt after the current step and exits 130 / 143;
    `edgemeta train --out RUN_DIR --resume` then continues exactly where it stopped.
    """
    # Under torchrun only rank 0 needs last.pt: it sends the checkpoint to the others.
    resuming = resume and (os.path.isfile(os.path.join(out, "last.pt")) or os.environ.get("RANK", "0") != "0")
    if data is None and not resume:
        raise click.UsageError("Missing option '--data'.")
    if data is None and not resuming:
        raise click.ClickException(
            f"--resume: no {os.path.join(out, 'last.pt')} to continue; give --data to start a new run"
        )
    from .extras import require_extra

    require_extra("edgemeta train", "train")
    from edgemeta.train.loop import TrainConfig
    from edgemeta.train.loop import train as run_training

    if split is None and data is not None and _omniglot(data):
        split = "background"
    # Resuming keeps the run's own data and episode count unless given: 0 means "the saved one".
    cfg = TrainConfig(
        data=data or "",
        out=out,
        split=split,
        rotations=rotations,
        way=way or 0,  # 0: chosen from the data
        shot=shot,
        query=query,
        episodes=episodes or (0 if resuming else TrainConfig.episodes),
        episodes_per_step=episodes_per_step,
        device=device,
        precision=precision,
        compile=compile_,
        seed=seed,
        backbone=backbone,
        size=size,
        channels=int(channels or 0),
        mean=mean,
        std=std,
        aspect=aspect or "",  # empty: from --init's model, else by channels (train/input_spec.py)
        metric=metric,
        lr=lr,
        lr_step=lr_step,
        augment=augment,
        val_every=val_every,
        val_episodes=val_episodes,
        test_way=test_way,
        test_shot=test_shot,
        patience=patience,
        time_limit=time_limit,
        lr_schedule=lr_schedule,
        init=init or "",
    )
    if backbone == "mobilenet_v3_small":
        cfg.backbone_kwargs = {}
    from edgemeta.runtime.errors import Interrupted

    try:
        summary = run_training(
            cfg, resume=resume, progress=not no_progress, overwrite=overwrite, checkpoint_minutes=checkpoint_minutes
        )
    except Interrupted as e:
        if os.environ.get("RANK", "0") == "0":
            click.echo(str(e), err=True)
        sys.exit(e.exit_code)
    except RuntimeError as e:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            raise
        # A peer died (torchrun then stops every worker and names the root cause); say it in one line.
        first = (str(e).splitlines() or ["?"])[0][:200]
        raise click.ClickException(
            f"distributed training stopped: another worker failed or left ({first}); "
            "the last checkpoint in --out stays loadable, resume with --resume"
        ) from None
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 reports
        return
    if as_json:
        click.echo(json.dumps(summary))
    else:
        best = summary["best_val"]
        click.echo(
            f"trained {summary['episodes']} episodes in {summary['seconds']:.0f}s; best validation "
            f"{100 * best['accuracy']:.2f}% +- {100 * best['ci95']:.2f} at episode {best['episode']}; "
            f"checkpoints in {summary['run_dir']}"
        )


def _omniglot(data: str) -> bool:
    from edgemeta.lab.datasets import is_omniglot

    return is_omniglot(data)
