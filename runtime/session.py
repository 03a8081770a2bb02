"""Every onnxruntime session of the project is built here: providers, threads, worker spin, log level."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort

from .errors import ModelError

DEVICES = ("cpu", "cuda", "auto")
CPU = ("CPUExecutionProvider",)
# onnxruntime's own default keeps each session's worker threads spinning after a call: about 40 ms
# of CPU burned per call on the project's host, and a core taken from whatever runs next (another
# session ran 1.7x slower in that window). 100 µs still covers the gaps inside a call and between
# back-to-back calls, so tight loops keep their speed (benchmarks/README.md).
DEFAULT_SPIN_US = 100


def make_session(
    model: bytes | str | os.PathLike,
    *,
    providers: Sequence[str] = CPU,
    threads: int | None = None,
    spin_us: int | None = DEFAULT_SPIN_US,
    initializers: dict[str, np.ndarray] | None = None,
) -> ort.InferenceSession:
    """An onnxruntime session for ``model`` (the serialized bytes or a file path), its warnings silenced.

    ``providers``: the provider list (``choose_providers`` picks one for a device); ``threads``:
    intra-op threads (None: onnxruntime's default); ``spin_us``: see ``session_options``;
    ``initializers``: arrays for the model's external initializers of those names, read from this
    memory (the caller keeps them alive). onnxruntime's own errors (a file that is not ONNX) pass
    through untyped: each caller knows what the file was meant to be.
    """
    options = session_options(threads, spin_us)
    if initializers:
        names = list(initializers)
        options.add_external_initializers(names, [ort.OrtValue.ortvalue_from_numpy(initializers[n]) for n in names])
    chosen = list(providers)
    # onnxruntime's fallback retries on CPU and prints to stdout; a CPU-only list has nothing to fall back to.
    fallback = int(chosen != list(CPU))
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=chosen, enable_fallback=fallback)


def choose_providers(device: str, providers: Sequence[str] | None) -> list[str]:
    """The provider list for ``device`` (``cpu``, ``cuda`` or ``auto``), or ``providers`` itself
    when given (every one must be available)."""
    available = ort.get_available_providers()
    if providers is not None:
        missing = [p for p in providers if p not in available]
        if missing:
            raise ModelError(f"execution provider(s) {missing} not available; this onnxruntime has {available}")
        return list(providers)
    if device not in DEVICES:
        raise ModelError(f"unknown device {device!r}; one of {DEVICES}")
    has_cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not has_cuda:
        raise ModelError(
            "device 'cuda' asked for, but this onnxruntime has no CUDAExecutionProvider (install onnxruntime-gpu)"
        )
    if device in ("cuda", "auto") and has_cuda:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return list(CPU)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def session_options(threads: int | None, spin_us: int | None) -> ort.SessionOptions:
    """Options with log level 3 (errors only); ``threads`` intra-op threads and one inter-op thread;
    ``spin_us``: how long idle worker threads spin for more work before sleeping, in microseconds
    (0: never; None: onnxruntime's own default, tens of milliseconds)."""
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        if not _is_int(threads) or threads < 1:
            raise ModelError(f"threads must be an integer of at least 1, got {threads!r}")
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if spin_us is None:
        return options
    if not _is_int(spin_us) or spin_us < 0:
        raise ModelError(f"spin_us must be an integer of 0 or more, got {spin_us!r}")
    if spin_us == 0:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    else:
        options.add_session_config_entry("session.intra_op.spin_duration_us", str(spin_us))
    return options
