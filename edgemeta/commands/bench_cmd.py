"""``edgemeta bench``: latency, throughput, cold start, memory and size of a model's predict path.

Imports neither torch nor onnx unless ``--vs-torch`` is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .options import json_option, load_model, model_option, query_views_option, threads_option


@click.command("bench")
@model_option()
@threads_option("onnxruntime (and torch) intra-op threads.")
@click.option(
    "--compare",
    "compare_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="A second model to measure in the same run (e.g. the int8 file).",
)
@click.option(
    "--vs-torch",
    "checkpoint",
    type=click.Path(),
    default=None,
    help="Training checkpoint, run folder, or the fp32 .onnx file of the same network: time torch eager "
    "too (needs the train and export extras).",
)
@query_views_option("The runtime's predict with queries over this many shifted views (test-time augmentation).")
@click.option("--iterations", default=1000, show_default=True, type=int, help="Batch-1 calls per contender.")
@click.option("--warmup", default=50, show_default=True, type=int, help="Untimed batch-1 calls first.")
@click.option(
    "--rounds",
    default=7,
    show_default=True,
    type=int,
    help="Interleaved throughput rounds per batch size (the best round is reported).",
)
@click.option("--round-seconds", default=0.15, show_default=True, type=float, help="Seconds per contender and round.")
@click.option("--batches", default="16,64,256", show_default=True, help="Throughput batch sizes, comma separated.")
@click.option(
    "--classes",
    default=None,
    help="Also time predict (batch 1 and 64) and store loading at these numbers of enrolled classes "
    "(random prototypes), comma separated, e.g. 10,1000,100000.",
)
@click.option(
    "--cold-runs", default=5, show_default=True, type=int, help="Fresh processes per cold-start path (0: skip)."
)
@click.option(
    "--idle-runs",
    default=3,
    show_default=True,
    type=int,
    help="Calls after which the CPU burned in the next 200 ms is measured (0: skip).",
)
@click.option(
    "--spin-us",
    default=None,
    type=int,
    help="The runtime sessions' worker spin after a call, in microseconds (default: the runtime's, 100; 0: none).",
)
@json_option()
def bench(
    model_path: Path | None,
    threads: int | None,
    compare_path: str | None,
    checkpoint: str | None,
    query_views: str,
    iterations: int,
    warmup: int,
    rounds: int,
    round_seconds: float,
    batches: str,
    classes: str | None,
    cold_runs: int,
    idle_runs: int,
    spin_us: int | None,
    as_json: bool,
) -> None:
    """Latency (p50/p90/p99 at batch 1), throughput, cold start, peak RSS and size of MODEL."""
    from edgemeta.lab.bench import BenchConfig, run_bench
    from edgemeta.runtime.errors import EdgemetaError

    if min(iterations, rounds) < 1 or min(warmup, cold_runs, idle_runs) < 0 or not round_seconds > 0:
        raise EdgemetaError(
            "--iterations and --rounds must be at least 1, --round-seconds positive, "
            "--warmup, --cold-runs and --idle-runs 0 or more"
        )
    config = BenchConfig(
        iterations,
        warmup,
        _batch_sizes(batches),
        rounds,
        round_seconds,
        cold_runs,
        int(query_views),
        idle_runs,
        classes=_batch_sizes(classes, "--classes") if classes is not None else (),
    )
    options: dict[str, Any] = {"threads": threads}
    if spin_us is not None:  # else the runtime's default
        options["spin_us"] = spin_us
    model = load_model(model_path, **options)
    compare = load_model(compare_path, **options) if compare_path else None
    if compare is not None and compare.meta.preprocess != model.meta.preprocess:
        raise EdgemetaError(f"--compare model {compare_path} takes other inputs than {model.path}")
    module = _torch_module(checkpoint) if checkpoint else None
    report = run_bench(
        model,
        threads,
        config,
        compare=compare,
        torch_module=module,
        progress=lambda msg: click.echo(f"bench: {msg}", err=True),
    )
    click.echo(json.dumps(report) if as_json else format_report(report))


def _batch_sizes(text: str, option: str = "--batches") -> tuple[int, ...]:
    from edgemeta.runtime.errors import EdgemetaError

    try:
        sizes = tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        sizes = ()
    if not sizes or min(sizes) < 1:
        raise EdgemetaError(f"{option} must be positive integers separated by commas, got {text!r}")
    return sizes


def _torch_module(checkpoint: str) -> Any:
    """The network of a checkpoint, run folder or fp32 ONNX file as a torch module (imports
    torch: only for ``--vs-torch``)."""
    from .extras import require_extra

    require_extra("edgemeta bench --vs-torch", "train")
    from edgemeta.train.checkpoint import build_model_from_checkpoint, read_checkpoint
    from edgemeta.train.onnx_init import is_onnx_file, network_from_onnx

    if is_onnx_file(checkpoint):
        return network_from_onnx(checkpoint)
    return build_model_from_checkpoint(read_checkpoint(checkpoint))


def _fmt_ms(lat: dict[str, float]) -> str:
    return f"{lat['p50']:8.3f} {lat['p90']:8.3f} {lat['p99']:8.3f}"


def format_report(r: dict[str, Any]) -> str:
    """A readable table of a ``run_bench`` report."""
    from edgemeta.lab.bench import SLOW_BLOCK_FACTOR

    m = r["model"]
    lines = [
        f"model {m['path']}: {m['size_bytes'] / 1024:.1f} KiB, input {m['input']}, "
        f"{m['embedding_dim']}-d, {m['provider']}, threads {m['threads'] or 'default'}"
        + (
            f", runtime queries over {r['config']['query_views']} views"
            if r["config"].get("query_views", 1) > 1
            else ""
        )
    ]
    if "compare" in r:
        lines.append(f"compare {r['compare']['path']}: {r['compare']['size_bytes'] / 1024:.1f} KiB")
    batches = list(r["throughput"])
    lines += [
        "",
        f"{'contender':18} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"
        + "".join(f" {'img/s @' + b:>11}" for b in batches)
        + "   (throughput: best round)",
    ]
    for name, lat in r["latency_ms"].items():
        lines.append(f"{name:18} {_fmt_ms(lat)}" + "".join(f" {r['throughput'][b][name]:11.0f}" for b in batches))
    slow = r.get("slow_blocks", {}).get("ort", 0)
    if slow > 2:
        lines.append(
            f"warning: {slow} of {len(r['latency_ms']['ort']['block_p50'])} bare onnxruntime blocks ran over "
            f"{SLOW_BLOCK_FACTOR}x its fastest: the machine was not steady; batch-1 ratios mix two states"
        )
    lines += ["", "ratios (above 1: the first is faster)"]
    for name, ratio in r["ratios"].items():
        tp = " ".join(f"@{b} {v:.2f}x" for b, v in ratio["throughput"].items())
        paired = (
            f" (paired blocks {ratio['latency_p50_paired']:.2f}x, best blocks {ratio['latency_best_block']:.2f}x)"
            if "latency_p50_paired" in ratio
            else ""
        )
        lines.append(f"  {name:32} batch-1 p50 {ratio['latency_p50']:.2f}x{paired}   throughput {tp}")
    if "torch_max_abs_diff" in r:
        lines.append(f"  torch vs onnxruntime outputs: max abs diff {r['torch_max_abs_diff']:.2e}")
    for key, label in (("cold_start", "cold start"), ("compare_cold_start", "cold start (compare)")):
        c = r.get(key)
        if c:
            lines += [
                "",
                f"{label}: edgemeta classify {c['classify_cli_s']:.3f} s (min {c['classify_cli_min_s']:.3f} s); "
                f"python API {c['api_s']:.3f} s = interpreter + import {c['import_s']:.3f} + load "
                f"{c['load_s']:.3f} + enroll/first prediction {c['first_prediction_s']:.3f} s",
                f"  peak RSS at first prediction {c['rss_mb']:.1f} MiB; torch/onnx imported: "
                f"{', '.join(c['heavy_modules']) or 'neither'}",
                f"  floor (python -c 'import numpy, onnxruntime') {c['floor_s']:.3f} s; classify adds "
                f"{c['classify_over_floor_s']:.3f} s to it",
            ]
    idle = r.get("idle_cpu_ms") or {}
    if idle.get("runtime") is not None:
        lines.append(
            f"\nCPU burned in the 200 ms after one batch-1 call: runtime {idle['runtime']:.1f} ms; "
            f"a session with onnxruntime's default spinning {idle['onnxruntime_defaults']:.1f} ms"
        )
    if r.get("scale"):
        from edgemeta.lab.scale import format_scale

        lines += [
            "",
            "predict and store loading by number of classes (random prototypes; predict top_k=1):",
            format_scale(r["scale"]),
        ]
    lines.append(f"\npeak RSS of this benchmark process {r['bench_peak_rss_mb']:.1f} MiB")
    return "\n".join(lines)
