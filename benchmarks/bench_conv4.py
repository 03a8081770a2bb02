"""The issue-5 speed figures in one run: runtime vs bare onnxruntime vs torch eager, cold start, RSS.

Builds a Conv-4 28x28 model with random weights (``conv4_model.py``; speed does not depend on the
weights) unless ``--model``/``--checkpoint`` name a real one, then runs ``edgemeta bench`` with
``--vs-torch`` (and ``--compare`` when given, e.g. the int8 file) and checks the targets:

- runtime predict at batch 1 at least 5x faster than torch eager (p50);
- runtime throughput at batch 16/64/256 at least 0.90x a bare onnxruntime session;
- ``edgemeta classify`` on one image, fresh process, under 0.3 s;
- with ``--compare INT8``: int8 at least 1.5x the fp32 throughput at batch 64.

    python benchmarks/bench_conv4.py [--model M.onnx --checkpoint C.pt] [--compare INT8.onnx]
        [--threads T] [--iterations 1000] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from edgemeta.commands.bench_cmd import format_report
from edgemeta.lab.bench import BenchConfig, run_bench
from edgemeta.runtime import EmbeddingModel

TARGETS = {
    "runtime_over_torch_p50": 5.0,
    "runtime_over_ort_throughput": 0.90,
    "classify_cli_s": 0.3,
    "int8_over_fp32_throughput_64": 1.5,
}


def checks(report: dict) -> list[tuple[str, float, str, bool]]:
    """(figure, value, target, met) for each issue-5 target the report can answer."""
    r = report["ratios"]
    out = []
    if "runtime_over_torch" in r:
        for key, label in (
            ("latency_p50", "p50"),
            ("latency_p50_paired", "p50, paired blocks"),
            ("latency_best_block", "best blocks"),
        ):
            v = r["runtime_over_torch"][key]
            out.append((f"runtime vs torch eager, batch-1 {label}", v, ">= 5x", v >= TARGETS["runtime_over_torch_p50"]))
    if "runtime_compare_over_torch" in r:
        v = r["runtime_compare_over_torch"]["latency_p50_paired"]
        out.append(
            ("compare's runtime vs torch eager, batch-1 paired", v, ">= 5x", v >= TARGETS["runtime_over_torch_p50"])
        )
    for b, v in r["runtime_over_ort"]["throughput"].items():
        out.append((f"runtime vs bare ORT throughput @{b}", v, ">= 0.90x", v >= TARGETS["runtime_over_ort_throughput"]))
    if report.get("cold_start"):
        v = report["cold_start"]["classify_cli_s"]
        out.append(("edgemeta classify cold start (s)", v, "< 0.3 s", v < TARGETS["classify_cli_s"]))
    if "runtime_compare_over_runtime" in r and "64" in r["runtime_compare_over_runtime"]["throughput"]:
        v = r["runtime_compare_over_runtime"]["throughput"]["64"]
        out.append(("compare vs model throughput @64", v, ">= 1.5x", v >= TARGETS["int8_over_fp32_throughput_64"]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model"), parser.add_argument("--checkpoint"), parser.add_argument("--compare")
    parser.add_argument("--threads", type=int), parser.add_argument("--json")
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--cold-runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgemeta-conv4-") as tmp:
        model_path, ckpt = args.model, args.checkpoint
        if model_path is None:
            from conv4_model import build  # needs torch + onnx

            model_path, ckpt = build(Path(tmp))
        module = None
        if ckpt is not None:
            from edgemeta.commands.bench_cmd import _torch_module

            module = _torch_module(str(ckpt))
        model = EmbeddingModel(model_path, threads=args.threads)
        compare = EmbeddingModel(args.compare, threads=args.threads) if args.compare else None
        config = BenchConfig(iterations=args.iterations, cold_runs=args.cold_runs)
        report = run_bench(
            model,
            args.threads,
            config,
            compare=compare,
            torch_module=module,
            progress=lambda m: print(f"bench: {m}", file=sys.stderr),
        )
    print(format_report(report))
    print("\nissue 5 targets:")
    for name, value, target, met in checks(report):
        print(f"  {'ok  ' if met else 'MISS'} {name:50} {value:8.3f}  (target {target})")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
