"""Cold start of the runtime in fresh processes, peak memory, and the CPU a call leaves burning
after it returns (parts of ``edgemeta bench``)."""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_COLD_SCRIPT = """
import time
t0 = time.perf_counter()
import edgemeta.runtime as rt
t1 = time.perf_counter()
model = rt.EmbeddingModel({path!r}, threads={threads!r})
t2 = time.perf_counter()
clf = rt.FewShotClassifier(model)
clf.enroll("a", {image!r})
clf.predict({image!r})
t3 = time.perf_counter()
import json, sys
from edgemeta.lab.bench_cold import peak_rss_mb
print(json.dumps({{"import_s": t1 - t0, "load_s": t2 - t1, "first_prediction_s": t3 - t2,
                  "in_process_s": t3 - t0, "rss_mb": peak_rss_mb(),
                  "heavy_modules": sorted(m for m in ("torch", "onnx") if m in sys.modules)}}))
"""


def cold_start(model: Any, threads: int | None, runs: int) -> dict[str, Any]:
    """Fresh processes to a first prediction: the Python API (with a breakdown) and ``edgemeta classify``.

    Medians over ``runs`` processes, after one untimed run that warms the file cache.
    """
    from PIL import Image

    from edgemeta.runtime.classifier import FewShotClassifier

    from .synthetic import random_images

    with tempfile.TemporaryDirectory(prefix="edgemeta-bench-") as tmp:
        image = Path(tmp) / "query.png"
        Image.fromarray(
            random_images(model, 1)[0, :, :, 0] if model.meta.preprocess.channels == 1 else random_images(model, 1)[0]
        ).save(image)
        store = Path(tmp) / "store.npz"
        clf = FewShotClassifier(model)
        clf.enroll("a", str(image))
        clf.save(store)
        script = _COLD_SCRIPT.format(path=str(model.path), threads=threads, image=str(image))
        api = [_timed_run([sys.executable, "-c", script]) for _ in range(runs + 1)][1:]
        command = _edgemeta_command() + ["classify", "--model", str(model.path), "--store", str(store), str(image)]
        cli = [_timed_run(command) for _ in range(runs + 1)][1:]
        # The floor no runtime on this stack can go under: an interpreter importing its two dependencies.
        floor = [_timed_run([sys.executable, "-c", "import numpy, onnxruntime"]) for _ in range(runs + 1)][1:]
    inner = [json.loads(out.strip().splitlines()[-1]) for _, out in api]
    result: dict[str, Any] = {"api_s": float(np.median([t for t, _ in api]))}
    for key in ("import_s", "load_s", "first_prediction_s", "in_process_s", "rss_mb"):
        result[key] = float(np.median([d[key] for d in inner]))
    result["heavy_modules"] = inner[-1]["heavy_modules"]
    result["classify_cli_s"] = float(np.median([t for t, _ in cli]))
    result["classify_cli_min_s"] = float(min(t for t, _ in cli))
    result["floor_s"] = float(np.median([t for t, _ in floor]))
    result["classify_over_floor_s"] = result["classify_cli_s"] - result["floor_s"]
    return result


def _edgemeta_command() -> list[str]:
    """The installed console script beside this interpreter, else ``python -m edgemeta``."""
    script = Path(sys.executable).with_name("edgemeta")
    if script.is_file():
        return [str(script)]
    found = shutil.which("edgemeta")
    return [found] if found else [sys.executable, "-m", "edgemeta"]


def _timed_run(command: list[str]) -> tuple[float, str]:
    """Wall seconds of one subprocess and its stdout; a failure raises with its stderr."""
    t0 = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:2])}... failed: {proc.stderr.strip()[-500:]}")
    return elapsed, proc.stdout


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MiB.

    Linux's ``VmHWM`` where there is one: ``ru_maxrss`` of a child of a big process reports the
    parent's size at fork time, not the child's own peak.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def process_cpu_ns() -> int | None:
    """CPU time of all this process's threads so far, in ns (Linux ``schedstat``); None elsewhere."""
    total = 0
    try:
        for stat in Path("/proc/self/task").glob("*/schedstat"):
            try:
                total += int(stat.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that ended while we looked
    except OSError:
        return None
    return total or None


def idle_cpu_ms(call: Callable[[], Any], window_s: float = 0.2, repeats: int = 3) -> float | None:
    """CPU milliseconds the process burns in the ``window_s`` after one ``call()`` returns (median of
    ``repeats``; each after a quiet ``window_s``): spinning worker threads show up here. None where
    the platform has no per-thread CPU clock."""
    used = []
    for _ in range(repeats):
        time.sleep(window_s)
        call()
        start = process_cpu_ns()
        time.sleep(window_s)
        end = process_cpu_ns()
        if start is None or end is None:
            return None
        used.append((end - start) / 1e6)
    return float(np.median(used))
