"""What the runtime adds on top of a bare onnxruntime call (issue 2).

In one process, on one ONNX model: ``FewShotClassifier.predict`` on in-memory uint8 images
(conversion, polarity, normalization, distances, softmax, top-1) against a bare
``onnxruntime.InferenceSession.run`` on the same, already preprocessed, input, on the runtime's
own session (``--separate-session``: on a second session of the same file; with more than one
thread its worker threads then compete with the first session's and the difference swings by
hundreds of microseconds either way). Blocks of calls of the two alternate so that machine noise
hits both alike; medians are reported, back to back and, apart, for a block's first call.

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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from edgemeta.lab.bench import SETTLE_S  # noqa: E402
from edgemeta.runtime import EmbeddingModel, FewShotClassifier  # noqa: E402
from edgemeta.runtime.session import make_session  # noqa: E402


def _time_pairs(fn_a, fn_b, calls: int, block: int = 20) -> tuple[float, float, float, float]:
    """Alternating blocks of ``block`` calls of ``fn_a`` and ``fn_b``, each after a pause: each
    pair of blocks sees nearly the same machine state, and each function runs back to back as an
    application would call it (alternating single calls would make each one start with the other's
    code and data in cache). Returns medians over the pairs of: seconds per call of ``fn_a`` and of
    ``fn_b`` back to back (a block's calls after its first), their paired difference a - b, and the
    paired difference of the blocks' first calls. A first call after the pause is several times
    slower than the next ones (on this 2-vCPU VM 0.5-0.7 ms instead of 0.13-0.15 for one image,
    whatever it runs): averaged into the back-to-back figure it would make that depend on the
    block size, so it is reported on its own."""
    pairs = max(calls // block, 1)
    samples = np.empty((pairs, 4))
    clock = time.perf_counter
    for i in range(pairs):
        ends = np.empty((2, block + 1))
        for row, fn in enumerate((fn_a, fn_b)):
            time.sleep(SETTLE_S)
            ends[row, 0] = clock()
            for j in range(block):
                fn()
                ends[row, j + 1] = clock()
        first = ends[:, 1] - ends[:, 0]
        rest = (ends[:, -1] - ends[:, 1]) / (block - 1)
        samples[i] = rest[0], rest[1], rest[0] - rest[1], first[0] - first[1]
    a, b, extra, first_extra = np.median(samples, axis=0)
    return float(a), float(b), float(extra), float(first_extra)


def measure(model_path: Path, threads: int, rounds: int, calls: int, separate_session: bool = False) -> dict:
    model = EmbeddingModel(model_path, threads=threads)
    clf = FewShotClassifier(model)
    h, w = model.meta.preprocess.size
    rng = np.random.default_rng(0)
    for k in range(5):
        clf.enroll(f"class{k}", rng.integers(0, 256, (5, h, w), dtype=np.uint8))
    bare = model.session
    if separate_session:
        bare = make_session(model_path, threads=threads, spin_us=None)  # onnxruntime's default spin
    out = {"model": str(model_path), "threads": threads, "bare_session": "separate" if separate_session else "shared"}
    for batch in (1, 64):
        images = rng.integers(0, 256, (batch, h, w), dtype=np.uint8)
        x = model.prepare(images)
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2), dtype=np.float32) / np.float32(255.0)
        feed = {model.meta.input_name: x}
        for _ in range(20):
            clf.predict(images)
            bare.run(None, feed)
        n = calls if batch == 1 else max(calls // 10, 40)
        block = 20 if batch == 1 else 4
        p, b, extra, first_extra = np.median(
            [_time_pairs(lambda: clf.predict(images), lambda: bare.run(None, feed), n, block) for _ in range(rounds)],
            axis=0,
        )
        out[f"batch{batch}"] = {
            "predict_ms": p * 1e3,
            "bare_ms": b * 1e3,
            "extra_us": extra * 1e6,
            "first_call_extra_us": first_extra * 1e6,
            "predict_images_per_s": batch / p,
            "bare_images_per_s": batch / b,
            "throughput_ratio": b / p,
        }
    return out


def stub_onnx(path: Path, size: int = 28, dim: int = 64) -> Path:
    """A linear embedding (flatten, one matrix product) with edgemeta metadata: a stand-in network."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from edgemeta.runtime.metadata import METADATA_KEY

    weights = np.random.default_rng(0).standard_normal((size * size, dim)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["images"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["embeddings"])],
        "stub",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 1, size, size])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["N", dim])],
        [numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    meta = {
        "format_version": 1,
        "input_name": "images",
        "output_name": "embeddings",
        "embedding_dim": dim,
        "metric": "sqeuclidean",
        "threshold": None,
        "preprocess": {
            "size": [size, size],
            "channels": 1,
            "resize": "bilinear",
            "polarity": "light_on_dark",
            "auto_polarity": True,
            "mean": [0.0],
            "std": [1.0],
        },
    }
    helper.set_model_props(model, {METADATA_KEY: json.dumps(meta)})
    onnx.save(model, path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: a random Conv-4, 28x28)")
    ap.add_argument(
        "--stub",
        action="store_true",
        help="a linear 784 -> 64 network instead: the network's own time (and its noise) "
        "shrinks to a few microseconds, leaving the runtime's overhead in view",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument(
        "--separate-session",
        action="store_true",
        help="time the bare call on a second session of the same file, not the runtime's own",
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.model
        if args.stub:
            path = stub_onnx(Path(tmp) / "stub.onnx")
        elif path is None:
            from conv4_onnx import conv4_onnx

            path = conv4_onnx(Path(tmp) / "conv4.onnx")
        result = measure(path, args.threads, args.rounds, args.calls, args.separate_session)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"model {result['model']}, {args.threads} threads")
    for b in ("batch1", "batch64"):
        r = result[b]
        print(
            f"{b:>8}: predict {r['predict_ms']:.4f} ms, bare ORT {r['bare_ms']:.4f} ms, "
            f"extra {r['extra_us']:.1f} us, throughput ratio {r['throughput_ratio']:.3f} (back to back); "
            f"first call after a pause: extra {r['first_call_extra_us']:.0f} us"
        )


if __name__ == "__main__":
    main()
