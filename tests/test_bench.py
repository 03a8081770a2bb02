"""``edgemeta bench`` in smoke mode (no speed asserted) and the torch-free import rule for bench/eval."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO, needs_torch
from tiny_models import linear_model, write_class_folders

from edgemeta.cli import main
from edgemeta.lab.bench import (
    BenchConfig,
    Contender,
    cold_start,
    idle_cpu_report,
    latency,
    ratios,
    slow_blocks,
    throughput,
)
from edgemeta.runtime import EmbeddingModel

SMOKE = [
    "--iterations",
    "3",
    "--warmup",
    "1",
    "--rounds",
    "1",
    "--round-seconds",
    "0.001",
    "--batches",
    "2,4",
    "--cold-runs",
    "0",
    "--idle-runs",
    "0",
]


@pytest.fixture
def model_path(tmp_path):
    return linear_model(tmp_path / "m.onnx")


def _counter(log: list[tuple[str, int]], name: str) -> Contender:
    return Contender(name, lambda batch: lambda: log.append((name, batch)))


def test_latency_and_throughput_interleave_every_contender():
    log: list[tuple[str, int]] = []
    contenders = [_counter(log, "a"), _counter(log, "b")]
    config = BenchConfig(iterations=4, warmup=2, rounds=3, round_seconds=1e-12)
    lat = latency(contenders, config, block=3)
    assert log == [("a", 1)] * 2 + [("b", 1)] * 2 + [("a", 1)] * 3 + [("b", 1)] * 3 + [("a", 1), ("b", 1)]
    assert set(lat) == {"a", "b"} and set(lat["a"]) == {"p50", "p90", "p99", "mean", "block_p50"}
    assert len(lat["a"]["block_p50"]) == 2  # blocks of 3 and 1 calls
    log.clear()
    rates = throughput(contenders, 4, config)
    assert log == [("a", 4)] * 2 + [("b", 4)] * 2 + [("a", 4), ("b", 4)] * 3  # 2 warm-up calls, then 1 per round
    assert all(r["best"] >= r["median"] > 0 for r in rates.values())


def test_ratios_say_how_much_faster_the_first_is():
    report = {
        "latency_ms": {"runtime": {"p50": 1.0}, "ort": {"p50": 0.5}, "torch": {"p50": 8.0}},
        "throughput": {"16": {"runtime": 900.0, "ort": 1000.0, "torch": 100.0}},
    }
    r = ratios(report)
    assert r["runtime_over_ort"] == {"latency_p50": 0.5, "throughput": {"16": 0.9}}
    assert r["runtime_over_torch"]["latency_p50"] == 8.0 and r["runtime_over_torch"]["throughput"]["16"] == 9.0
    assert "runtime_compare_over_runtime" not in r
    assert "latency_p50_paired" not in r["runtime_over_ort"]


def test_slow_blocks_counts_blocks_well_above_the_fastest():
    assert slow_blocks([0.11, 0.11, 0.18, 0.12, 0.14]) == 2  # over 1.25 x 0.11
    assert slow_blocks([0.2]) == 0


def test_paired_ratio_is_the_median_of_block_ratios():
    # Block 2 ran while something else slowed torch down 3x and the runtime only 1.5x:
    # the overall medians would credit the runtime with part of that slowdown, the pairs do not.
    report = {
        "latency_ms": {
            "runtime": {"p50": 0.1, "block_p50": [0.1, 0.15, 0.1]},
            "torch": {"p50": 0.6, "block_p50": [0.5, 1.5, 0.4]},
        },
        "throughput": {},
    }
    assert ratios(report)["runtime_over_torch"]["latency_p50_paired"] == pytest.approx(5.0)
    assert ratios(report)["runtime_over_torch"]["latency_best_block"] == pytest.approx(4.0)  # 0.4 / 0.1


def test_bench_smoke_json_with_compare(tmp_path, model_path):
    other = linear_model(tmp_path / "other.onnx", np.eye(64, 16, dtype=np.float32))
    result = CliRunner().invoke(main, ["bench", "--model", str(model_path), "--compare", str(other), *SMOKE, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["model"]["size_bytes"] == model_path.stat().st_size and report["model"]["input"] == [1, 8, 8]
    assert set(report["latency_ms"]) == {"runtime", "ort", "runtime[compare]", "ort[compare]"}
    assert set(report["throughput"]) == set(report["throughput_median"]) == {"2", "4"}
    assert set(report["ratios"]) == {"runtime_over_ort", "runtime_compare_over_runtime", "ort_compare_over_ort"}
    assert report["cold_start"] is None and report["bench_peak_rss_mb"] > 0
    assert set(report["slow_blocks"]) == set(report["latency_ms"])


def test_bench_table_and_errors(tmp_path, model_path):
    table = CliRunner().invoke(main, ["bench", "--model", str(model_path), *SMOKE])
    assert table.exit_code == 0, table.output
    assert "runtime_over_ort" in table.stdout and "p50 ms" in table.stdout
    for args in (
        ["--model", str(tmp_path / "none.onnx")],
        ["--model", str(model_path), "--batches", "a"],
        ["--model", str(model_path), "--iterations", "0"],
        ["--model", str(model_path), "--idle-runs", "-1"],
        ["--model", str(model_path), "--spin-us", "-5"],
    ):
        result = CliRunner().invoke(main, ["bench", *args])
        assert result.exit_code == 1 and result.stderr.startswith("Error: ") and len(result.stderr.splitlines()) == 1


def test_idle_cpu_reports_both_sessions(model_path):
    idle = idle_cpu_report(EmbeddingModel(model_path), threads=1, runs=1)
    assert set(idle) == {"runtime", "onnxruntime_defaults"}
    assert all(v is None or v >= 0 for v in idle.values())  # None where there is no per-thread CPU clock


def test_cold_start_runs_fresh_processes(model_path):
    result = cold_start(EmbeddingModel(model_path), threads=1, runs=1)
    assert result["heavy_modules"] == []
    assert 0 < result["in_process_s"] < result["api_s"] and result["classify_cli_s"] > 0
    assert result["rss_mb"] > 0
    assert result["floor_s"] > 0 and result["classify_over_floor_s"] == result["classify_cli_s"] - result["floor_s"]


def test_bench_and_eval_never_import_torch_or_onnx(tmp_path, model_path):
    data = write_class_folders(tmp_path / "data", 6, 4)
    script = f"""
import sys
from edgemeta.cli import main
for args in ({["bench", "--model", str(model_path), *SMOKE]!r},
             {["eval", "--model", str(model_path), "--data", str(data), "--query", "2", "--episodes", "5"]!r}):
    try:
        main(args, standalone_mode=False)
    except SystemExit:
        pass
print(sorted(m for m in ("torch", "onnx") if m in sys.modules))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout and "runtime_over_ort" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@needs_torch
def test_bench_vs_torch(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from conv4_model import export_onnx, random_conv4

        from edgemeta.train.checkpoint import save_checkpoint
    finally:
        sys.path.pop(0)
    net = random_conv4()
    onnx_path = export_onnx(net, tmp_path / "conv4.onnx", size=16)
    save_checkpoint(
        tmp_path / "conv4.pt", {"config": {"backbone": "conv4", "in_channels": 1}, "model": net.state_dict()}
    )
    result = CliRunner().invoke(
        main, ["bench", "--model", str(onnx_path), "--vs-torch", str(tmp_path / "conv4.pt"), *SMOKE, "--json"]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["torch_max_abs_diff"] < 1e-4
    assert {"runtime_over_torch", "ort_over_torch"} <= set(report["ratios"])
    # The fp32 file itself rebuilds the torch network (no checkpoint needed), the same weights.
    result = CliRunner().invoke(
        main, ["bench", "--model", str(onnx_path), "--vs-torch", str(onnx_path), *SMOKE, "--cold-runs", "0", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["torch_max_abs_diff"] < 1e-4


def test_runtime_overhead_script_reports_back_to_back_and_first_calls(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from runtime_overhead import _time_pairs, measure, stub_onnx
    finally:
        sys.path.pop(0)
    calls = {"a": 0, "b": 0}
    a, b, extra, first_extra = _time_pairs(lambda: calls.update(a=calls["a"] + 1), lambda: None, 6, block=3)
    assert calls["a"] == 6 and a >= 0 and b >= 0  # two pairs of blocks of three calls
    report = measure(stub_onnx(tmp_path / "stub.onnx"), threads=1, rounds=1, calls=40)
    for batch in ("batch1", "batch64"):
        row = report[batch]
        assert {"predict_ms", "bare_ms", "extra_us", "first_call_extra_us", "throughput_ratio"} <= set(row)
        assert row["predict_ms"] > 0 and row["bare_ms"] > 0


def test_house_budgets_counts_the_runs_each_budget_held_in():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from house_budgets import summarize
    finally:
        sys.path.pop(0)

    def run(vs_product: float, predict1_ms: float) -> dict:
        rows = [{"classes": 100000, "predict1_ms": predict1_ms, "load_s": 0.1}]
        ratios = {"1000": {"vs_fewest": 1.1}, "100000": {"vs_product": vs_product}}
        overhead = {"batch1": {"extra_us": 20.0}, "batch64": {"throughput_ratio": 0.89}}
        return {"scale": {"rows": rows, "ratios": ratios}, "overhead": overhead}

    held = {s["budget"]: s["held"] for s in summarize([run(2.9, 1.2), run(3.1, 0.9), run(3.5, 0.95)])}
    assert held == {
        "1,000 vs 10 classes at batch 64": 3,
        "100,000 classes at batch 64 vs the bare product": 1,
        "batch 1 at 100,000 classes, ms": 2,
        "loading 100,000 classes, s": 3,
        "batch-1 extra over a bare call, us": 3,
        "batch-64 throughput vs a bare call": 0,
    }
