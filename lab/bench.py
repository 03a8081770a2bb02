"""Speed and footprint of the runtime's predict path, against a bare onnxruntime session (and torch).

Every contender is timed in the same process and interleaved with the others (latency: call by
call; throughput: round by round), so a machine shared with other work slows all of them alike
and the ratios stay meaningful. Contenders work on in-memory images at the model's size:

- ``runtime``: ``FewShotClassifier.predict`` on uint8 [B, H, W, C] with 5 enrolled classes
  (preprocessing, the ONNX call, distances, top-1 predictions);
- ``ort``: a bare ``onnxruntime.InferenceSession.run`` on the already normalized float32
  [B, C, H, W] input, on the runtime's own session (same graph, same thread pool: a second
  session's workers would compete with the first's for the cores);
- ``torch``: torch eager forward on that float32 input (``--vs-torch``; torch imported inside).

Cold start runs in fresh subprocesses: the Python API (import, load, enroll, first prediction)
and the ``edgemeta classify`` command on one PNG, end to end (``bench_cold``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .bench_cold import cold_start, idle_cpu_ms, peak_rss_mb
from .scale import scale_report
from .synthetic import random_images

Call = Callable[[], Any]
ENROLLED_CLASSES = 5


@dataclass(frozen=True)
class BenchConfig:
    """iterations: batch-1 calls per contender after ``warmup``; throughput: ``rounds`` rounds of
    about ``round_seconds`` per contender and batch size (``throughput`` reports the best round,
    ``throughput_median`` the median); ``cold_runs`` fresh processes per path; ``query_views``:
    the runtime contenders' ``FewShotClassifier(query_views=...)``; ``idle_runs``: calls whose
    after-call CPU is measured (0: skip); ``classes``: class counts for ``scale.scale_report`` (none: skip)."""

    iterations: int = 1000
    warmup: int = 50
    batches: tuple[int, ...] = (16, 64, 256)
    rounds: int = 7
    round_seconds: float = 0.15
    cold_runs: int = 5
    query_views: int = 1
    idle_runs: int = 3
    classes: tuple[int, ...] = ()


@dataclass
class Contender:
    """``make(batch)`` returns a zero-argument call that processes one batch of that size."""

    name: str
    make: Callable[[int], Call]


# A pause before each contender's block or round: thread pools spin for a while after a call and
# would take the cores from the next contender (torch's OpenMP team about 10 ms; an onnxruntime
# session with its default spinning about 40 ms; the runtime's own sessions 0.1 ms).
SETTLE_S = 0.05


def runtime_contender(model: Any, name: str = "runtime", query_views: int = 1) -> Contender:
    """``FewShotClassifier.predict`` with ``ENROLLED_CLASSES`` classes of 5 shots each."""
    from edgemeta.runtime.classifier import FewShotClassifier

    clf = FewShotClassifier(model, query_views=query_views)
    for k in range(ENROLLED_CLASSES):
        clf.enroll(f"class{k}", random_images(model, 5, seed=100 + k))

    def make(batch: int) -> Call:
        images = random_images(model, batch, seed=batch)
        return lambda: clf.predict(images)

    return Contender(name, make)


def ort_contender(model: Any, name: str = "ort") -> Contender:
    """Bare ``session.run`` on the normalized float32 [B, C, H, W] of the same images."""
    session = model.session
    feed_name, out_name = model.meta.input_name, model.meta.output_name

    def make(batch: int) -> Call:
        x = model_input(model, batch)
        return lambda: session.run([out_name], {feed_name: x})

    return Contender(name, make)


def model_input(model: Any, batch: int) -> np.ndarray:
    """float32 [batch, C, H, W]: what the runtime feeds the network for ``random_images``."""
    from edgemeta.runtime.preprocess import normalize

    return normalize(model.prepare(random_images(model, batch, seed=batch)), model.meta.preprocess)


def torch_contender(module: Any, model: Any, threads: int | None, name: str = "torch") -> Contender:
    """Torch eager forward of ``module`` (an ``nn.Module``) under ``inference_mode``."""
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    module = module.eval().cpu()

    def make(batch: int) -> Call:
        x = torch.from_numpy(model_input(model, batch))

        def call() -> Any:
            with torch.inference_mode():
                return module(x)

        return call

    return Contender(name, make)


def latency(contenders: list[Contender], config: BenchConfig, block: int = 50) -> dict[str, dict[str, float]]:
    """Batch-1 latency in ms per contender: p50, p90, p99, mean, and ``block_p50`` (the median of
    each block, in order: adjacent blocks of two contenders ran within milliseconds of each other).

    Contenders alternate in blocks of ``block`` calls, not call by call: thread pools (onnxruntime's,
    torch's OpenMP) keep spinning briefly after a call and would steal the cores from whichever
    contender ran next.
    """
    calls = [c.make(1) for c in contenders]
    for call in calls:
        for _ in range(config.warmup):
            call()
    samples = np.empty((config.iterations, len(calls)))
    clock = time.perf_counter
    for start in range(0, config.iterations, block):
        for j, call in enumerate(calls):
            time.sleep(SETTLE_S)
            for i in range(start, min(start + block, config.iterations)):
                t0 = clock()
                call()
                samples[i, j] = clock() - t0
    ms = samples * 1e3
    starts = range(0, config.iterations, block)
    return {
        c.name: {
            "p50": float(np.percentile(ms[:, j], 50)),
            "p90": float(np.percentile(ms[:, j], 90)),
            "p99": float(np.percentile(ms[:, j], 99)),
            "mean": float(ms[:, j].mean()),
            "block_p50": [float(np.median(ms[s : s + block, j])) for s in starts],
        }
        for j, c in enumerate(contenders)
    }


def throughput(contenders: list[Contender], batch: int, config: BenchConfig) -> dict[str, dict[str, float]]:
    """Images per second per contender at ``batch``: ``best`` and ``median`` over interleaved rounds.

    Other work on the machine only ever slows a round down, so the best round estimates what the
    contender can do and ratios of best rounds are the stable ones. Each contender's calls per
    round are sized from a timed warm-up call, so slow contenders (torch eager) do not stretch
    the benchmark.
    """
    calls = [c.make(batch) for c in contenders]
    per_round = []
    for call in calls:
        call()
        t0 = time.perf_counter()
        call()
        per_round.append(max(1, int(config.round_seconds / max(time.perf_counter() - t0, 1e-9))))
    rates = np.empty((config.rounds, len(calls)))
    for r in range(config.rounds):
        for j, call in enumerate(calls):
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            for _ in range(per_round[j]):
                call()
            rates[r, j] = per_round[j] * batch / (time.perf_counter() - t0)
    return {
        c.name: {"best": float(rates[:, j].max()), "median": float(np.median(rates[:, j]))}
        for j, c in enumerate(contenders)
    }


def describe(model: Any, threads: int | None) -> dict[str, Any]:
    """What was measured: file, size, input shape, provider, threads."""
    spec = model.meta.preprocess
    return {
        "path": str(model.path),
        "size_bytes": model.path.stat().st_size,
        "provider": model.provider,
        "input": [spec.channels, *spec.size],
        "embedding_dim": model.embedding_dim,
        "threads": threads,
    }


def run_bench(
    model: Any,
    threads: int | None = None,
    config: BenchConfig = BenchConfig(),
    *,
    compare: Any | None = None,
    torch_module: Any | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The whole benchmark as one JSON-ready dict; ``compare`` is a second ``EmbeddingModel``."""
    say = progress or (lambda _msg: None)
    views = config.query_views
    contenders = [runtime_contender(model, query_views=views), ort_contender(model)]
    if compare is not None:
        contenders += [runtime_contender(compare, "runtime[compare]", views), ort_contender(compare, "ort[compare]")]
    report: dict[str, Any] = {"model": describe(model, threads), "config": asdict(config)}
    if compare is not None:
        report["compare"] = describe(compare, threads)
    if torch_module is not None:
        contenders.append(torch_contender(torch_module, model, threads))
        report["torch_max_abs_diff"] = torch_agreement(torch_module, model)
    say(f"latency at batch 1 ({config.iterations} calls per contender)")
    report["latency_ms"] = latency(contenders, config)
    report["slow_blocks"] = {name: slow_blocks(lat["block_p50"]) for name, lat in report["latency_ms"].items()}
    report["throughput"], report["throughput_median"] = {}, {}
    for b in config.batches:
        say(f"throughput at batch {b}")
        rates = throughput(contenders, b, config)
        report["throughput"][str(b)] = {name: r["best"] for name, r in rates.items()}
        report["throughput_median"][str(b)] = {name: r["median"] for name, r in rates.items()}
    report["cold_start"] = report["compare_cold_start"] = None
    if config.cold_runs:
        say(f"cold start ({config.cold_runs} fresh processes per path)")
        report["cold_start"] = cold_start(model, threads, config.cold_runs)
        if compare is not None:
            report["compare_cold_start"] = cold_start(compare, threads, config.cold_runs)
    report["idle_cpu_ms"] = None
    if config.idle_runs:
        say("CPU left burning after one prediction")
        report["idle_cpu_ms"] = idle_cpu_report(model, threads, config.idle_runs)
    report["scale"] = None
    if config.classes:
        say(f"predict and store loading at {', '.join(map(str, config.classes))} classes")
        report["scale"] = scale_report(model, config.classes)
    report["bench_peak_rss_mb"] = peak_rss_mb()
    report["ratios"] = ratios(report)
    return report


def idle_cpu_report(model: Any, threads: int | None, runs: int = 3) -> dict[str, float | None]:
    """CPU ms burned in the 200 ms after one batch-1 call: the runtime's ``predict``, and a bare
    session of the same file with onnxruntime's default spinning (what a plain onnxruntime user gets)."""
    plain = type(model)(model.path, threads=threads, spin_us=None).session
    x = model_input(model, 1)
    return {
        "runtime": idle_cpu_ms(runtime_contender(model).make(1), repeats=runs),
        "onnxruntime_defaults": idle_cpu_ms(lambda: plain.run(None, {model.meta.input_name: x}), repeats=runs),
    }


# A block this much slower than the contender's fastest one ran while something else had a core.
SLOW_BLOCK_FACTOR = 1.25


def slow_blocks(block_p50: list[float]) -> int:
    """How many blocks' medians exceed ``SLOW_BLOCK_FACTOR`` times the fastest block's.

    A steady machine gives 0-1 for bare onnxruntime; many mean the batch-1 figures of this run
    mix two machine states (on a VM: a vCPU taken away for tens of milliseconds at a time)."""
    best = min(block_p50)
    return sum(1 for b in block_p50 if b > SLOW_BLOCK_FACTOR * best)


def torch_agreement(module: Any, model: Any) -> float:
    """Max |torch - onnxruntime| over a batch of 16: a large value means not the same network."""
    import torch

    x = model_input(model, 16)
    with torch.inference_mode():
        ref = module.eval()(torch.from_numpy(x)).numpy()
    return float(np.abs(ref - model.run_input(x)).max())


def ratios(report: dict[str, Any]) -> dict[str, Any]:
    """Speed ratios ``a_over_b`` (above 1: a is faster) from a ``run_bench`` report.

    ``latency_p50``: the ratio of the two overall medians; ``latency_p50_paired``: the median over
    blocks of the ratio of the two contenders' block medians. Other work on a shared machine comes
    and goes over seconds and slows some contenders more than others (torch's OpenMP team waits
    for its slowest thread); pairing blocks that ran milliseconds apart cancels most of it.
    ``latency_best_block``: the ratio of the two fastest block medians, each contender at its best
    (the batch-1 counterpart of the best throughput round; the steadiest of the three here).
    """
    lat, tp = report["latency_ms"], report["throughput"]
    pairs = [
        ("runtime", "ort"),
        ("runtime", "torch"),
        ("ort", "torch"),
        ("runtime[compare]", "torch"),
        ("runtime[compare]", "runtime"),
        ("ort[compare]", "ort"),
    ]
    out: dict[str, Any] = {}
    for a, b in pairs:
        if a in lat and b in lat:
            name = f"{a}_over_{b}".replace("[compare]", "_compare")
            out[name] = {
                "latency_p50": lat[b]["p50"] / lat[a]["p50"],
                "throughput": {k: v[a] / v[b] for k, v in tp.items()},
            }
            if "block_p50" in lat[a] and "block_p50" in lat[b]:
                paired = np.asarray(lat[b]["block_p50"]) / np.asarray(lat[a]["block_p50"])
                out[name]["latency_p50_paired"] = float(np.median(paired))
                out[name]["latency_best_block"] = min(lat[b]["block_p50"]) / min(lat[a]["block_p50"])
    return out
