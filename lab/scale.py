"""How predict and store loading grow with the number of enrolled classes (issue 25 item 7).

For each class count a store of random prototypes is written to a temporary folder and loaded with
``FewShotClassifier.load``. Then, in two phases: ``predict(top_k=1)`` on random images at batch 1
and at ``batch``, in blocks that take turns across the class counts (so machine noise and the state
of the thread pools hit every count alike); afterwards, alone, the bare float32 distance product
``queries @ prototypes.T`` ([batch, D] x [D, C]) per count. The product runs as numpy runs it, on
OpenBLAS's threads (all cores), whose workers keep spinning after a call: timed between predict
blocks they would slow the next network call (onnxruntime's threads) and misstate both. Predict's
own product at many classes uses the same pool, and that cost stays in its figure. Each figure is
the fastest call: other work on a shared machine only ever slows a call down (as ``bench``'s
throughput reports its best round).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .synthetic import random_images

SCALE_CLASSES = (10, 1_000, 100_000)
SCALE_BATCH = 64
# Between blocks: thread pools (onnxruntime's, OpenBLAS's) keep spinning briefly after a call and
# would slow whichever block runs next (as lab/bench.py's SETTLE_S).
_SETTLE_S = 0.05


def random_store(model: Any, classes: int, path: Path, seed: int = 0) -> None:
    """Write a store of ``classes`` random prototypes for ``model`` (1 to 5 shots each) to ``path``."""
    from edgemeta.runtime.store import StoreContents, write_store

    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 6, classes)
    sums = rng.standard_normal((classes, model.embedding_dim)) * counts[:, None]
    write_store(
        path,
        StoreContents(
            [f"class{i}" for i in range(classes)],
            sums,
            counts,
            model.fingerprint,
            model.meta.metric,
            model.meta.store_network_id or "",
        ),
    )


def _best_s(call: Callable[[], Any], calls: int) -> float:
    best = float("inf")
    for _ in range(calls):
        t0 = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t0)
    return best


def _turns(calls: dict[str, Callable[[], Any]], per_block: int, blocks: int) -> dict[str, float]:
    """Fastest seconds per call of each of ``calls``, over ``blocks`` rounds in which each runs a
    block of ``per_block`` calls in turn, after a pause (``_SETTLE_S``)."""
    best = dict.fromkeys(calls, float("inf"))
    for _ in range(blocks):
        for name, call in calls.items():
            time.sleep(_SETTLE_S)
            best[name] = min(best[name], _best_s(call, per_block))
    return best


def _loaded(model: Any, classes: int, loads: int) -> tuple[Any, float, float]:
    """A classifier of ``classes`` random prototypes, the fastest of ``loads`` loads (s) and its
    first predict (s, batch 1: it builds the prototype snapshot, once per change of the classes)."""
    from edgemeta.runtime.classifier import FewShotClassifier

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.npz"
        random_store(model, classes, path)
        load_s = _best_s(lambda: FewShotClassifier.load(path, model), loads)
        clf = FewShotClassifier.load(path, model)
    one = random_images(model, 1, seed=1)
    return clf, load_s, _best_s(lambda: clf.predict(one), 1)


def scale_report(
    model: Any, classes: tuple[int, ...] = SCALE_CLASSES, batch: int = SCALE_BATCH, calls: int = 50, loads: int = 3
) -> dict[str, Any]:
    """``rows``, per class count: ``load_s``, ``first_predict_ms``, ``predict1_ms``,
    ``predict{batch}_ms`` and ``product{batch}_ms`` (the bare float32 distance product of ``batch``
    queries with every prototype); ``ratios``: predict at ``batch`` against the fewest classes
    (``vs_fewest``) and against the bare distance product (``vs_product``), per count; ``search_vs_product``:
    what the classes add to predict (predict at ``batch`` minus predict at the fewest classes, which is
    nearly all network) against the bare product."""
    loaded = {c: _loaded(model, c, loads) for c in classes}
    one, many = random_images(model, 1, seed=1), random_images(model, batch, seed=batch)
    blocks, per = 5, max(1, calls // 5)
    predict1 = _turns({str(c): (lambda clf=v[0]: clf.predict(one)) for c, v in loaded.items()}, per, blocks)
    predict_b = _turns({str(c): (lambda clf=v[0]: clf.predict(many)) for c, v in loaded.items()}, per, blocks)
    queries = np.random.default_rng(1).standard_normal((batch, model.embedding_dim)).astype(np.float32)
    products = {}
    for c, (clf, _, _) in loaded.items():
        protos_t = np.ascontiguousarray(clf.prototypes()[1].T)
        products[str(c)] = _turns({"product": lambda: queries @ protos_t}, per, blocks)["product"]
    key = f"predict{batch}_ms"
    rows = [
        {
            "classes": c,
            "load_s": load_s,
            "first_predict_ms": first * 1e3,
            "predict1_ms": predict1[str(c)] * 1e3,
            key: predict_b[str(c)] * 1e3,
            f"product{batch}_ms": products[str(c)] * 1e3,
        }
        for c, (_, load_s, first) in loaded.items()
    ]
    base = rows[0][key]
    ratios = {
        str(r["classes"]): {
            "vs_fewest": r[key] / base,
            "vs_product": r[key] / r[f"product{batch}_ms"],
            "search_vs_product": (r[key] - base) / r[f"product{batch}_ms"],
        }
        for r in rows
    }
    return {"batch": batch, "rows": rows, "ratios": ratios}


def format_scale(report: dict[str, Any]) -> str:
    """A readable table of a ``scale_report``."""
    b = report["batch"]
    lines = [
        f"{'classes':>9} {'load s':>8} {'1st pred ms':>12} {'predict@1 ms':>13} {f'predict@{b} ms':>14}"
        f" {f'product@{b} ms':>14} {'vs fewest':>10} {'vs product':>11} {'added/product':>14}"
    ]
    for r in report["rows"]:
        ratio = report["ratios"][str(r["classes"])]
        lines.append(
            f"{r['classes']:>9} {r['load_s']:8.3f} {r['first_predict_ms']:12.3f} {r['predict1_ms']:13.3f}"
            f" {r[f'predict{b}_ms']:14.3f}"
            f" {r[f'product{b}_ms']:14.3f} {ratio['vs_fewest']:9.2f}x {ratio['vs_product']:10.2f}x"
            f" {ratio['search_vs_product']:13.2f}x"
        )
    return "\n".join(lines)
