"""Run every fuzz target with many examples and report how many ran and what failed.

python stress/fuzz_all.py --examples 5000 [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzz_sources  # noqa: E402
import fuzz_targets as ft  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

TARGETS = {
    "image_bytes": (ft.IMAGE_BYTES, ft.check_image_bytes),
    "image_arrays": (ft.ARRAYS, ft.check_array),
    "pil_images": (ft.PIL_IMAGES, ft.check_pil),
    "store_bytes": (ft.STORE_BYTES, ft.check_store),
    "model_metadata": (ft.METADATA_TEXT, ft.check_metadata),
    "onnx_bytes": (ft.ONNX_BYTES, ft.check_onnx),
    "data_sources": (fuzz_sources.SOURCES, fuzz_sources.check_source),
}


def fuzz(name: str, examples: int, collect: bool = True) -> dict:
    """Run one target; with ``collect``, tally every escaping error instead of stopping at the first."""
    strategy, check = TARGETS[name]
    ran = 0
    seen: dict[str, list] = {}

    def counted(x) -> None:
        nonlocal ran
        ran += 1
        if not collect:
            return check(x)
        try:
            check(x)
        except Exception as e:  # tallied, and the run goes on to find the other failures
            tb = traceback.extract_tb(e.__traceback__)[-1]
            key = f"{type(e).__module__}.{type(e).__name__} at {Path(tb.filename).name}:{tb.lineno}"
            seen.setdefault(key, [0, repr(x)[:300]])[0] += 1

    test = settings(
        max_examples=examples, deadline=None, database=None, derandomize=False, suppress_health_check=list(HealthCheck)
    )(given(strategy)(counted))
    t0 = time.perf_counter()
    failure = None
    try:
        test()
    except Exception as e:  # hypothesis re-raises the minimal failing example's error
        failure = describe(e)
    return {
        "target": name,
        "examples_run": ran,
        "seconds": round(time.perf_counter() - t0, 1),
        "failure": failure,
        "escapes": {k: {"count": v[0], "example": v[1]} for k, v in seen.items()},
    }


def describe(e: BaseException) -> str:
    """Each distinct failure: its error and the minimal example Hypothesis found."""
    parts = getattr(e, "exceptions", (e,))  # an exception group's parts (BaseExceptionGroup: Python 3.11+)
    return "\n---\n".join("".join(traceback.format_exception_only(type(x), x)).strip()[:1500] for x in parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=5000)
    parser.add_argument("--only", nargs="*", default=None, choices=sorted(TARGETS))
    parser.add_argument("--stop-at-first", action="store_true", help="let Hypothesis stop and shrink the first failure")
    args = parser.parse_args()
    results = []
    for name in args.only or TARGETS:
        results.append(fuzz(name, args.examples, collect=not args.stop_at_first))
        print(json.dumps(results[-1]), flush=True)
    return 1 if any(r["failure"] or r["escapes"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
