"""fp32 vs int8 throughput of an exported embedding model at batch 64, on this CPU (onnxruntime).

    python benchmarks/int8_throughput.py MODEL.onnx [--data SRC --split S] [--seconds 1 --rounds 5] [--threads 1 2]

MODEL.onnx is an fp32 model from ``edgemeta export``. Quantizes it several ways (QDQ / QOperator,
per-channel / per-tensor), checks each one's embeddings against fp32, and prints images/s per
variant and thread count, with the ratio to fp32. Calibration: --data (prepared through the model's
preprocessing), else synthetic images.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys


def cpu_flags() -> list[str]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx512", "amx", "avx_vnni", "avx2")))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--data")
    ap.add_argument("--split")
    ap.add_argument("--seconds", type=float, default=1.0, help="per round and variant")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args(argv)

    from edgemeta.export.quantize import calibration_subset, quantize_int8, throughput
    from edgemeta.export.validation_data import load_images
    from edgemeta.export.verify import embed_onnx, paired_cosine
    from edgemeta.runtime import EmbeddingModel
    from edgemeta.runtime.session import make_session

    model = EmbeddingModel(args.model)
    spec = model.meta.preprocess
    fp32 = model.path.read_bytes()
    data = load_images(args.data, args.split, spec, explicit=args.data is not None)
    calib = calibration_subset(data.images)
    check = data.images[:512]
    reference = embed_onnx(make_session(fp32), check, spec)
    variants = {"fp32": fp32}
    for name, qdq, per_channel, reduce in (
        ("int8 QDQ per-channel 7-bit", True, True, True),  # what export writes
        ("int8 QDQ per-channel 8-bit", True, True, False),
        ("int8 QDQ per-tensor 7-bit", True, False, True),
        ("int8 QOperator per-channel 7-bit", False, True, True),
    ):
        variants[name] = quantize_int8(fp32, calib, spec, per_channel=per_channel, qdq=qdq, reduce_range=reduce)
    rows = []
    for threads in args.threads:
        best = throughput(variants, spec, args.batch, threads, args.seconds, args.rounds)
        for name, blob in variants.items():
            emb = embed_onnx(make_session(blob), check, spec)
            cos = float(paired_cosine(emb, reference).mean())
            ratio = best[name] / best["fp32"]
            rows.append(
                {
                    "variant": name,
                    "threads": threads,
                    "images_per_s": best[name],
                    "ratio_vs_fp32": ratio,
                    "mean_cosine_vs_fp32": cos,
                    "bytes": len(blob),
                }
            )
            print(
                f"{name:34s} threads={threads}  {best[name]:10.0f} img/s  x{ratio:4.2f}  cos={cos:.4f}", file=sys.stderr
            )
    import onnxruntime as ort

    print(
        json.dumps(
            {
                "cpu": platform.processor() or platform.machine(),
                "cpu_flags": cpu_flags(),
                "onnxruntime": ort.__version__,
                "batch": args.batch,
                "calibration": data.describe(),
                "rows": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
