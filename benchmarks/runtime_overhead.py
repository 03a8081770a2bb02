"""What the runtime adds on top of a bare onnxruntime call (issue 2).

In one process, on one ONNX model: ``FewShotClassifier.predict`` on in-memory uint8 images
(conversion, polarity, normalization, distances, softmax, top-1) against a bare
``onnxruntime.InferenceSession.run`` on the same, already preprocessed, input. Rounds of the
two alternate so that machine noise hits both alike; medians are reported.

    python benchmarks/runtime_overhead.py [--model M.onnx] [--threads 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edgemeta.runtime import EmbeddingModel, FewShotClassifier  # noqa: E402


def _time_calls(fn, calls: int) -> float:
    """Median seconds per call over ``calls`` calls."""
    samples = np.empty(calls)
    for i in range(calls):
        t0 = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - t0
    return float(np.median(samples))


def measure(model_path: Path, threads: int, rounds: int, calls: int) -> dict:
    model = EmbeddingModel(model_path, threads=threads)
    clf = FewShotClassifier(model)
    h, w = model.meta.preprocess.size
    rng = np.random.default_rng(0)
    for k in range(5):
        clf.enroll(f"class{k}", rng.integers(0, 256, (5, h, w), dtype=np.uint8))
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    bare = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    out = {"model": str(model_path), "threads": threads}
    for batch in (1, 64):
        images = rng.integers(0, 256, (batch, h, w), dtype=np.uint8)
        x = model.prepare(images)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
        feed = {model.meta.input_name: x}
        for _ in range(20):
            clf.predict(images)
            bare.run(None, feed)
        t_pred, t_bare = [], []
        n = calls if batch == 1 else max(calls // 20, 20)
        for _ in range(rounds):
            t_pred.append(_time_calls(lambda: clf.predict(images), n))
            t_bare.append(_time_calls(lambda: bare.run(None, feed), n))
        p, b = float(np.median(t_pred)), float(np.median(t_bare))
        out[f"batch{batch}"] = {"predict_ms": p * 1e3, "bare_ms": b * 1e3, "extra_us": (p - b) * 1e6,
                                "predict_images_per_s": batch / p, "bare_images_per_s": batch / b,
                                "throughput_ratio": b / p}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: a random Conv-4, 28x28)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if path is None:
            from conv4_onnx import conv4_onnx
            path = conv4_onnx(Path(tmp) / "conv4.onnx")
        result = measure(path, args.threads, args.rounds, args.calls)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"model {result['model']}, {args.threads} threads")
    for b in ("batch1", "batch64"):
        r = result[b]
        print(f"{b:>8}: predict {r['predict_ms']:.4f} ms, bare ORT {r['bare_ms']:.4f} ms, "
              f"extra {r['extra_us']:.1f} us, throughput ratio {r['throughput_ratio']:.3f}")


if __name__ == "__main__":
    main()
