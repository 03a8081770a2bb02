"""Nearest-prototype math, the one home of the formula (pure numpy).

A class's prototype is the mean of its support embeddings. A query goes to the prototype at the
smallest squared Euclidean distance ``d = ||q||^2 - 2 q.p + ||p||^2``; its score for each class is
``softmax(-d)`` over the classes. For a ``cosine`` model the embeddings (queries and support), not
the prototypes, are L2-normalized first, so ``d`` is still a squared Euclidean distance and one
rejection rule (runtime/rejection.py: accept iff ``d`` is within the class's limit) serves both
metrics.

Users: the classifier (runtime/classifier.py), few-shot evaluation (lab/evaluation.py), export's
verification and rejection calibration (export/verify.py, export/threshold.py), the baked classifier
graph (export/bake.py builds this formula as ONNX nodes; tests/test_nearest.py checks it against these
functions) and, in torch, the training loss (train/loss.py ``distances``: the same expansion;
tests/test_nearest.py checks its logits equal ``-squared_distances``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Floor of a vector's length before dividing by it: an all-zero embedding stays zero, not NaN.
NORM_EPS = 1e-12
FLOAT32_ROUNDOFF = float(np.finfo(np.float32).eps) / 2  # unit roundoff u of float32: |fl(x) - x| <= u |x|


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """[..., D] -> [..., D] (same float dtype), each vector divided by max(its length, NORM_EPS)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), NORM_EPS)


def for_metric(emb: np.ndarray, metric: str) -> np.ndarray:
    """Embeddings [..., D] as nearest-prototype compares them: unit length for ``cosine``, else as given."""
    return l2_normalize(emb) if metric == "cosine" else emb


def squared_norms(x: np.ndarray) -> np.ndarray:
    """[..., D] -> [...]: each vector's squared length, in x's dtype."""
    return np.einsum("...d,...d->...", x, x)


def prototypes_from_sums(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per-class embedding sums float [C, D] and shot counts int [C] -> prototypes float32 [C, D]."""
    return (sums / counts[:, None]).astype(np.float32)


def class_means(support: np.ndarray) -> np.ndarray:
    """Support embeddings [..., N, K, D] (K shots of each of N classes) -> prototypes [..., N, D]."""
    return support.mean(axis=-2)


def squared_distances(
    queries: np.ndarray, prototypes: np.ndarray, dtype: Any = np.float64, proto_sq: np.ndarray | None = None
) -> np.ndarray:
    """queries [..., N, D], prototypes [..., C, D] -> squared Euclidean distances [..., N, C] >= 0.

    Computed as ``(||q||^2 + ||p||^2) - 2 q.p`` in ``dtype``: float64 by default, because the
    expansion cancels badly in float32 for nearby points (scores off by ~2e-5 on a trained model).
    ``proto_sq`` [..., C] is ``squared_norms(prototypes)`` in ``dtype`` when the caller keeps it.
    """
    q = np.asarray(queries, dtype=dtype)
    p = np.asarray(prototypes, dtype=dtype)
    pp = squared_norms(p) if proto_sq is None else proto_sq
    d = squared_norms(q)[..., :, None] + pp[..., None, :]
    cross = np.matmul(q, np.swapaxes(p, -1, -2))
    cross *= 2.0  # exact: the same bits as ``- 2.0 * q.p`` in one expression
    d -= cross
    return np.maximum(d, 0.0, out=d)


def softmax_scores(distances: np.ndarray, columns: np.ndarray | None = None) -> np.ndarray:
    """softmax(-distances) along the last axis: distances float [..., C] -> scores [..., C], or only
    at ``columns`` int [..., k] (e.g. ``top_k``'s) -> [..., k]; shifted by each row's minimum so that
    the exponentials cannot overflow."""
    weights = np.exp(distances.min(axis=-1, keepdims=True) - distances)
    total = weights.sum(axis=-1, keepdims=True)
    if columns is not None:
        weights = np.take_along_axis(weights, columns, axis=-1)
    return weights / total


def top_k(d: np.ndarray, k: int) -> np.ndarray:
    """Column indices int [N, k] of the k smallest entries of each row of d [N, C], smallest first."""
    if k == 1:
        return d.argmin(axis=1)[:, None]
    if k < d.shape[1]:
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
        return np.take_along_axis(part, order, axis=1)
    return np.argsort(d, axis=1, kind="stable")
