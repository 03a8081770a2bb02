"""``PrototypeIndex``: an immutable snapshot of a classifier's prototypes and the nearest-prototype
search over them, from a handful of classes to hundreds of thousands (the general prediction
path; one query among few classes takes runtime/fastpath.py).

The results are those of the float64 formula of runtime/nearest.py (scores within 1e-7, the same
top-k). For few query-class pairs every distance is computed in float64. For more, the
distance product runs in float32, about twice as fast and with half the memory traffic, on
vectors centered on the prototypes' mean (which shrinks its rounding error), and float64
recomputes the candidates: every class within a proven error bound of the k-th nearest, and every
class whose softmax weight could matter at 1e-7. The other classes enter the softmax sum with
their float32 weights, each below ``exp(-margin)`` of the best one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .nearest import softmax_scores, squared_norms, top_k

# Which path answers (both give the same results): float64 throughout is the faster one for
# fewer than about 32,768 query-class pairs or one query among up to 4,096 classes (measured with
# a 64-d model, lab/scale.py); the float32 candidates for more.
EXACT_CLASSES = 4096
SCALED_CLASSES = 512
_EXACT_ENTRIES = 2**15
# A single BLAS call this small (rows x columns x depth) runs on the calling thread; a larger one
# hands work to OpenBLAS's threads, and on a busy or 2-core machine (onnxruntime's workers still
# spinning after the network call) a hand-over can wait for a scheduler tick, 4 ms: batch 64
# against 1,000 classes took 16 ms instead of 0.1 ms. Products of a few such calls are split.
_ONE_THREAD_MNK = 2**18
_SPLIT_AT_MOST = 64
# Largest score error allowed from the classes left in float32 (the contract asks for 1e-6).
_SCORE_TOL = 1e-7
_U32 = float(np.finfo(np.float32).eps) / 2  # unit roundoff of float32
# exp(-87) = 1.6e-38, just above float32's smallest normal number: far classes' weights are raised to it,
# which adds at most C * 1.6e-38 to a softmax sum of at least 1.
_MIN_EXPONENT = np.float32(-87.0)


class Neighbors(NamedTuple):
    """Per query, its k nearest classes, nearest first: ``classes`` int [N, k], ``distance`` float64
    [N, k] (squared Euclidean) and ``score`` float64 [N, k] (softmax of -distance over all classes)."""

    classes: np.ndarray
    distance: np.ndarray
    score: np.ndarray


@dataclass(frozen=True)
class PrototypeIndex:
    """What one prediction reads, never changed: enrolling or removing a class builds a new one.
    ``exact``: up to ``EXACT_CLASSES`` classes, ``minus_2_t`` is there; ``scaled``: from
    ``SCALED_CLASSES`` classes, the centered float32 arrays are (an array not built is empty)."""

    labels: tuple[str, ...]
    prototypes: np.ndarray  # float32 [C, D]: the single source of truth (bake embeds exactly these)
    sq_norms: np.ndarray  # float64 [C]: ||p||^2
    counts: np.ndarray  # int64 [C]: shots per class, for the rejection rule
    exact: bool
    scaled: bool
    minus_2_t: np.ndarray  # float64 [D, C]: -2 p.T
    center: np.ndarray  # float32 [D]: the prototypes' mean
    centered_t: np.ndarray  # float32 [D + 1, C]: -2 (p - center).T over a last row ||p - center||^2
    radius: float = 0.0  # the largest ||p - center||

    @classmethod
    def build(cls, labels: tuple[str, ...], sums: np.ndarray, counts: np.ndarray) -> PrototypeIndex:
        """From per-class sums float64 [C, D] and shot counts int64 [C]."""
        protos = (sums / counts[:, None]).astype(np.float32)
        wide = protos.astype(np.float64)
        sq = squared_norms(wide)
        exact, scaled = len(labels) <= EXACT_CLASSES, len(labels) >= SCALED_CLASSES
        minus_2_t = np.ascontiguousarray(-2.0 * wide.T) if exact else np.empty(0)
        if not scaled:
            return cls(labels, protos, sq, counts, exact, scaled, minus_2_t, np.empty(0), np.empty(0))
        center = wide.mean(axis=0)
        centered = wide - center
        matrix = np.empty((wide.shape[1] + 1, len(labels)), dtype=np.float32)
        matrix[:-1] = -2.0 * centered.T
        matrix[-1] = squared_norms(centered)
        return cls(
            labels,
            protos,
            sq,
            counts,
            exact,
            scaled,
            minus_2_t,
            center.astype(np.float32),
            matrix,
            float(np.sqrt(matrix[-1].max())),
        )

    def search(self, queries: np.ndarray, k: int) -> Neighbors:
        """queries float32 [N, D] -> their ``k`` (at most C) nearest classes."""
        k = min(k, len(self.labels))
        if self.exact and (not self.scaled or queries.shape[0] * len(self.labels) <= _EXACT_ENTRIES):
            return self._exact(queries.astype(np.float64), k)
        return self._scaled(queries, k)

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """queries float [N, D] -> squared Euclidean distances float64 [N, C] to every prototype."""
        q = queries.astype(np.float64)
        partial = product(q, -2.0 * self.prototypes.T.astype(np.float64))
        partial += self.sq_norms
        return np.maximum(partial + squared_norms(q)[:, None], 0.0)

    def _exact(self, q: np.ndarray, k: int) -> Neighbors:
        """All in float64: ``partial = ||p||^2 - 2 q.p`` ranks and scores; adding ``||q||^2`` gives d."""
        partial = product(q, self.minus_2_t)
        partial += self.sq_norms
        best = top_k(partial, k)
        near = np.take_along_axis(partial, best, axis=1)
        return Neighbors(best, np.maximum(near + squared_norms(q)[:, None], 0.0), softmax_scores(partial, best))

    def _scaled(self, queries: np.ndarray, k: int) -> Neighbors:
        """float32 candidates, float64 results (see the module docstring). Works in place on one
        float32 [N, C] array: at 100,000 classes every pass over it, or a new one, costs milliseconds."""
        n, c = queries.shape[0], len(self.labels)
        q = queries.astype(np.float64)
        qc = np.ones((n, q.shape[1] + 1), dtype=np.float32)  # [N, D + 1]: q - center, 1
        qc[:, :-1] = q - self.center
        work = product(qc, self.centered_t)  # [N, C]: ~ d - ||q - center||^2
        # |work - exact| <= tol: float32 dot products of length D + 1, the roundings around them and
        # the float32 sum of the weights below.
        qc_sq = squared_norms(qc[:, :-1].astype(np.float64))
        qc_norm = np.sqrt(qc_sq)
        tol = (2 * q.shape[1] + 8 + math.log2(c)) * _U32 * (qc_norm + self.radius) ** 2
        margin = np.log(np.maximum(c * tol / _SCORE_TOL, 1.0))
        kth = work.min(axis=1) if k == 1 else np.partition(work, k - 1, axis=1)[:, k - 1]
        flat = np.flatnonzero(work <= (kth + 2 * tol + margin)[:, None])
        rows, cols = np.divmod(flat, c)
        # The candidates' partial distances in float64, as _exact computes them.
        partial = np.einsum("nd,nd->n", q[rows], -2.0 * self.prototypes[cols].astype(np.float64)) + self.sq_norms[cols]
        order = np.lexsort((partial, rows))
        rows, cols, partial = rows[order], cols[order], partial[order]
        first = np.searchsorted(rows, np.arange(n))
        shift = partial[first]  # each row's smallest partial distance
        # The other classes' float32 weights, each below exp(-margin) of the best class's.
        offset = qc_sq - squared_norms(q)  # work + offset ~ partial
        np.subtract((shift - offset).astype(np.float32)[:, None], work, out=work)
        np.maximum(work, _MIN_EXPONENT, out=work)  # keeps exp out of subnormals, 10x slower there
        np.exp(work, out=work)
        work.reshape(-1)[flat] = 0.0
        total = work.sum(axis=1) + np.bincount(rows, np.exp(shift[rows] - partial), n)
        pick = first[:, None] + np.arange(k)  # [N, k]: each row has >= k candidates
        near = partial[pick]
        return Neighbors(
            cols[pick],
            np.maximum(near + squared_norms(q)[:, None], 0.0),
            np.exp(shift[:, None] - near) / total[:, None],
        )


def product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [N, D] @ b [D, C] -> [N, C] (dtype of a and b), split over columns when that keeps every
    BLAS call on this thread in a few calls (see ``_ONE_THREAD_MNK``)."""
    n, d = a.shape
    c = b.shape[1]
    calls = math.ceil(max(n, 2) * c * d / _ONE_THREAD_MNK)
    if calls <= 1 or calls > _SPLIT_AT_MOST:
        return a @ b
    out = np.empty((n, c), dtype=np.result_type(a, b))
    step = math.ceil(c / calls)
    for start in range(0, c, step):
        np.matmul(a, b[:, start : start + step], out=out[:, start : start + step])
    return out
