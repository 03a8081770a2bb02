"""Static int8 post-training quantization (onnxruntime.quantization) and a throughput probe.

QDQ format, per-channel symmetric int8 weights, uint8 activations calibrated (MinMax) on a
few hundred prepared training images. The fp32 model's metadata is carried over by the caller.

Weights use 7 bits (``reduce_range``): x86 CPUs without VNNI multiply uint8 x int8 pairs into
saturating int16 sums (``vpmaddubsw``), which full-range per-channel weights overflow: on an AVX2
machine the mean cosine to fp32 fell from 0.99995 to 0.9989 without it. VNNI, AMX and ARM kernels
do not saturate, and lose nothing measurable with 7-bit weights.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgemeta.runtime.errors import ExportError
from edgemeta.runtime.preprocess import PreprocessSpec, normalize

CALIBRATION_IMAGES = 300
CALIBRATION_BATCH = 50
MAX_ACCURACY_LOSS = 1.0  # percentage points of 5-way 1-shot validation accuracy


class _Reader:
    """onnxruntime CalibrationDataReader over prepared images uint8 [M, H, W, C]."""

    def __init__(self, images: np.ndarray, spec: PreprocessSpec, input_name: str) -> None:
        self._batches: Iterator[np.ndarray] = (
            images[i : i + CALIBRATION_BATCH] for i in range(0, len(images), CALIBRATION_BATCH)
        )
        self._spec, self._name = spec, input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self._batches, None)
        return None if batch is None else {self._name: normalize(batch, self._spec)}

    def rewind(self) -> None:  # part of the reader protocol in some onnxruntime versions
        raise NotImplementedError


def calibration_subset(images: np.ndarray, n: int = CALIBRATION_IMAGES, seed: int = 0) -> np.ndarray:
    """``n`` random prepared images, uint8 [n, H, W, C]."""
    if len(images) <= n:
        return images
    return images[np.sort(np.random.default_rng(seed).choice(len(images), n, replace=False))]


def quantize_int8(
    fp32_bytes: bytes,
    calibration: np.ndarray,
    spec: PreprocessSpec,
    input_name: str = "images",
    *,
    per_channel: bool = True,
    qdq: bool = True,
    reduce_range: bool = True,
) -> bytes:
    """fp32 ONNX bytes -> int8 ONNX bytes, calibrated on ``calibration`` (uint8 [M, H, W, C])."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(calibration) == 0:
        raise ExportError("int8 calibration needs images; the calibration set is empty")
    with tempfile.TemporaryDirectory(prefix="edgemeta-int8-") as tmp:
        src, pre, dst = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32_bytes)
        # Shape inference + graph cleanup first, as onnxruntime recommends for static quantization.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(dst),
            _Reader(calibration, spec, input_name),
            quant_format=QuantFormat.QDQ if qdq else QuantFormat.QOperator,
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"WeightSymmetric": True, "ActivationSymmetric": False},
        )
        return dst.read_bytes()


def accuracy_change(fp32: dict[str, Any], int8: dict[str, Any], force: bool) -> dict[str, Any]:
    """Compare 5-way 1-shot accuracies (fractions); refuse a loss over ``MAX_ACCURACY_LOSS`` points unless ``force``."""
    change = 100.0 * (int8["accuracy"] - fp32["accuracy"])
    report = {
        "fp32": fp32["accuracy"],
        "int8": int8["accuracy"],
        "change_points": change,
        "way": fp32["way"],
        "shot": fp32["shot"],
        "episodes": fp32["episodes"],
        "forced": False,
    }
    if change < -MAX_ACCURACY_LOSS:
        if not force:
            raise ExportError(
                f"int8 loses {-change:.2f} points of {fp32['way']}-way {fp32['shot']}-shot accuracy "
                f"({100 * fp32['accuracy']:.2f}% -> {100 * int8['accuracy']:.2f}%), over the "
                f"{MAX_ACCURACY_LOSS} point limit; --force writes it anyway"
            )
        report["forced"] = True
    return report


def throughput(
    variants: dict[str, bytes],
    spec: PreprocessSpec,
    batch: int = 64,
    threads: int | None = 1,
    seconds: float = 0.3,
    rounds: int = 3,
) -> dict[str, float]:
    """Images per second of each serialized model on float32 [batch, C, H, W] (CPU, all graph optimizations).

    Runs are interleaved and the best of ``rounds`` is kept: on a shared CPU that is the stable figure.
    """
    from edgemeta.runtime.session import make_session

    sessions = {name: make_session(blob, threads=threads) for name, blob in variants.items()}
    x = np.random.default_rng(0).standard_normal((batch, spec.channels, *spec.size)).astype(np.float32)
    best = dict.fromkeys(variants, 0.0)
    for _ in range(rounds):
        for name, sess in sessions.items():
            feed = {sess.get_inputs()[0].name: x}
            sess.run(None, feed)
            runs, start = 0, time.perf_counter()
            while runs < 3 or time.perf_counter() - start < seconds:
                sess.run(None, feed)
                runs += 1
            best[name] = max(best[name], runs * batch / (time.perf_counter() - start))
    return best
