"""``PrototypeIndex``: an immutable snapshot of a classifier's prototypes and the nearest-prototype
search over them, from a handful of classes to hundreds of thousands (the general prediction
path; one query among few classes takes runtime/fastpath.py).

The results are those of the float64 formula of runtime/nearest.py (scores within 2e-7, the same
top-k). For few query-class pairs every distance is computed in float64. For more, the
distance product runs in float32, about twice as fast and with half the memory traffic, on
vectors centered on the prototypes' mean (which shrinks its rounding error), and float64
recomputes the candidates: every class within a proven error bound of the k-th nearest, and every
class whose softmax weight could matter at 1e-7. The classes a little farther enter the softmax
sum with their float32 weights, each below ``exp(-margin)`` of the best one; the rest, below
``exp(-L)`` of it, are left out (see ``_SCORE_TOL``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .errors import ModelError
from .nearest import FLOAT32_ROUNDOFF, prototypes_from_sums, softmax_scores, squared_norms, top_k
from .slab_product import SlabProduct

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
# Largest score error allowed from each of the two shortcuts below (the contract asks for 1e-6).
# Let p* be a row's smallest partial distance, T = sum_j exp(p* - partial_j) >= 1 its softmax sum
# and s_i = w_i / T a score. (1) The classes not recomputed, each more than ``margin`` =
# ln(C tol / _SCORE_TOL) beyond p*, weigh exp(p* - their float32 partial distance): below exp(-margin)
# and off by a factor within exp(+-tol), so T moves by at most C tol exp(-margin) = _SCORE_TOL.
# (2) Classes more than L = ln(C / _SCORE_TOL) (27.6 nats at 100,000 classes) beyond p* are left
# out of T: each weighs below exp(-L), together below C exp(-L) = _SCORE_TOL. The sum T' computed instead has |T' - T| <= 2e-7 and T' >= 1 (the
# nearest class's weight is exactly 1), so |w_i / T' - w_i / T| = w_i |T - T'| / (T T') <= 2e-7.
# So exp runs only on the classes within L of the best: a few hundred of 100,000 random ones.
_SCORE_TOL = 1e-7
# When more than one entry in this many is near the best (unit vectors, d in [0, 4]), gathering
# them costs more than float64 throughout.
_DENSE = 8
# Rows of [C, D] transposed per block when building (a block and its transpose fit in L2).
_TRANSPOSE_ROWS = 4096
# From this many query-class pairs the candidates are found in one pass over the product, not two
# (``_entries_by_slabs``): alone 1.6 vs 3.5 ms at 64 x 100,000 (inside predict, right after the
# product, a paired median 0.7 ms less), equal at 64 x 8,192, slower below.
_SLABS_FROM = 2**19
_SLABS = 32
# From this many classes a batch's product and slab minima run in one onnxruntime call
# (runtime/slab_product.py): 3.6-4.7 vs 6.0-7.1 ms at 64 x 100,000. One query keeps numpy's
# matrix-vector product (0.57 vs 1.04 ms).
SLAB_PRODUCT_CLASSES = 16_384


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
    centered_t: np.ndarray  # float32 [D + 1, C']: -2 (p - center).T over a last row ||p - center||^2
    radius: float = 0.0  # the largest ||p - center||
    # From SLAB_PRODUCT_CLASSES classes: C' is C rounded up to whole slabs (the added columns are
    # 0 over +inf, never near anything) and this runs a batch's product (None: numpy does).
    slab_product: SlabProduct | None = None

    @classmethod
    def build(cls, labels: tuple[str, ...], sums: np.ndarray, counts: np.ndarray) -> PrototypeIndex:
        """From per-class sums float64 [C, D] and shot counts int64 [C]."""
        protos = prototypes_from_sums(sums, counts)
        sq = np.einsum("cd,cd->c", protos, protos, dtype=np.float64)
        exact, scaled = len(labels) <= EXACT_CLASSES, len(labels) >= SCALED_CLASSES
        minus_2_t = np.ascontiguousarray(-2.0 * protos.T.astype(np.float64)) if exact else np.empty(0)
        if not scaled:
            return cls(labels, protos, sq, counts, exact, scaled, minus_2_t, np.empty(0), np.empty(0))
        center = protos.mean(axis=0, dtype=np.float64).astype(np.float32)
        centered = protos - center  # float32: one rounding of each difference, as the bound assumes
        c = len(labels)
        slabbed = c >= SLAB_PRODUCT_CLASSES
        matrix = np.zeros((protos.shape[1] + 1, -(-c // _SLABS) * _SLABS if slabbed else c), dtype=np.float32)
        for start in range(0, c, _TRANSPOSE_ROWS):  # in blocks: a whole transposed copy thrashes the cache
            block = centered[start : start + _TRANSPOSE_ROWS]
            np.multiply(block.T, np.float32(-2.0), out=matrix[:-1, start : start + len(block)])
        matrix[-1, :c] = np.einsum("cd,cd->c", centered, centered, dtype=np.float64)
        radius = float(np.sqrt(matrix[-1, :c].max()))
        matrix[-1, c:] = np.inf
        return cls(
            labels, protos, sq, counts, exact, scaled, minus_2_t, center, matrix, radius, _slab_product(matrix, slabbed)
        )

    def search(self, queries: np.ndarray, k: int) -> Neighbors:
        """queries float32 [N, D] -> their ``k`` (at most C) nearest classes."""
        k = min(k, len(self.labels))
        if self.exact and (not self.scaled or queries.shape[0] * len(self.labels) <= _EXACT_ENTRIES):
            return self._exact(queries.astype(np.float64), k, self.minus_2_t)
        return self._scaled(queries, k)

    def distances(self, queries: np.ndarray) -> np.ndarray:
        """queries float [N, D] -> squared Euclidean distances float64 [N, C] to every prototype."""
        q = queries.astype(np.float64)
        partial = product(q, -2.0 * self.prototypes.T.astype(np.float64))
        partial += self.sq_norms
        return np.maximum(partial + squared_norms(q)[:, None], 0.0)

    def _exact(self, q: np.ndarray, k: int, minus_2_t: np.ndarray) -> Neighbors:
        """All in float64: ``partial = ||p||^2 - 2 q.p`` ranks and scores; adding ``||q||^2`` gives d."""
        partial = product(q, minus_2_t)
        partial += self.sq_norms
        best = top_k(partial, k)
        near = np.take_along_axis(partial, best, axis=1)
        return Neighbors(best, np.maximum(near + squared_norms(q)[:, None], 0.0), softmax_scores(partial, best))

    def _scaled(self, queries: np.ndarray, k: int) -> Neighbors:
        """float32 candidates, float64 results (see the module docstring). One or two passes over the
        float32 [N, C] product pick the few entries that matter (``_entries_that_matter``); at 100,000
        classes each pass over all entries, or a new array of them, costs milliseconds."""
        n, c = queries.shape[0], len(self.labels)
        q = queries.astype(np.float64)
        qc = np.ones((n, q.shape[1] + 1), dtype=np.float32)  # [N, D + 1]: q - center, 1
        qc[:, :-1] = q - self.center
        # work [N, C']: ~ d - ||q - center||^2 = partial - offset (+inf in padding columns)
        minima: np.ndarray | None = None
        if self.slab_product is not None and n > 1:
            work, minima = self.slab_product(qc)
        else:
            work = product(qc, self.centered_t)
        # |work + offset - partial| <= tol: float32 dot products of length D + 1 and the roundings
        # around them (with room for a float32 sum of C weights).
        qc_sq = squared_norms(qc[:, :-1].astype(np.float64))
        tol = (2 * q.shape[1] + 8 + math.log2(c)) * FLOAT32_ROUNDOFF * (np.sqrt(qc_sq) + self.radius) ** 2
        flat, exact_below = _entries_that_matter(work, tol, k, c, minima)
        if flat.size * _DENSE > work.size:  # e.g. unit vectors: every class within a few nats
            return self._exact(q, k, -2.0 * self.prototypes.T.astype(np.float64))
        rows, cols = np.divmod(flat, work.shape[1])  # rows ascending
        near = work.reshape(-1)[flat]
        exact = near <= exact_below[rows]
        er, ec = rows[exact], cols[exact]
        # The candidates' partial distances in float64, as _exact computes them, nearest first per row.
        partial = np.einsum("nd,nd->n", q[er], -2.0 * self.prototypes[ec].astype(np.float64)) + self.sq_norms[ec]
        order = np.lexsort((partial, er))
        ec, partial = ec[order], partial[order]
        first = np.searchsorted(er, np.arange(n))
        shift = partial[first]  # each row's smallest partial distance
        fr, base = rows[~exact], shift - (qc_sq - squared_norms(q))  # float32 weights: exp(base - work)
        total = np.bincount(er, np.exp(shift[er] - partial), n) + np.bincount(fr, np.exp(base[fr] - near[~exact]), n)
        pick = first[:, None] + np.arange(k)  # [N, k]: each row has >= k candidates
        near_partial = partial[pick]
        return Neighbors(
            ec[pick],
            np.maximum(near_partial + squared_norms(q)[:, None], 0.0),
            np.exp(shift[:, None] - near_partial) / total[:, None],
        )


def _entries_that_matter(
    work: np.ndarray, tol: np.ndarray, k: int, classes: int, minima: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the float32 product ``work`` [n, C'] (C' >= ``classes``: columns beyond hold +inf),
    their error bounds ``tol`` float64 [n] and, when the product came with them, its slab minima
    [n, C' / _SLABS] -> the flat indices into ``work`` of the entries that matter (int64,
    ascending) and, per row, the limit below which an entry is recomputed in float64 (float64 [n])."""
    if k <= work.shape[1] // _SLABS and (minima is not None or work.size >= _SLABS_FROM):
        found = _entries_by_slabs(work, tol, k, classes, minima)
        if found is not None:
            return found
    low = work.min(axis=1)
    kth = low if k == 1 else np.partition(work, k - 1, axis=1)[:, k - 1]
    limit, exact_below = _limits(low, kth, tol, classes)
    return np.flatnonzero(work <= limit[:, None]), exact_below


def _limits(low: np.ndarray, kth: np.ndarray, tol: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row, from its smallest and k-th smallest entry (float32 [n]): the float32 limit at or below
    which an entry matters, and the float64 one below which it is recomputed in float64."""
    exact_below = kth + 2 * tol + np.log(np.maximum(c * tol / _SCORE_TOL, 1.0))
    keep_below = np.maximum(exact_below, low + 2 * tol + math.log(c / _SCORE_TOL))
    # Compared in float32 (a float64 limit would widen all n x C entries first, a pass as slow as the
    # comparison), the limit rounded up so that no entry below it is missed.
    return np.nextafter(keep_below.astype(np.float32), np.float32(np.inf)), exact_below


def _entries_by_slabs(
    work: np.ndarray, tol: np.ndarray, k: int, classes: int, minima: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """``_entries_that_matter`` in one pass over ``work`` instead of two: each row is cut into
    ``_SLABS`` equal slabs (and a tail of fewer than ``_SLABS`` columns) and their element-wise
    minimum, [n, C // _SLABS], gives each row's minimum and an upper bound on its k-th smallest
    entry (k distinct entries lie at or below the k-th smallest of these minima), hence limits
    that can only be too wide. Only the columns whose minimum is within them are read again:
    tens per row of 100,000 random classes. The exact limits then filter these few, so the
    result is the two passes' to the bit. None when too many columns are within the limits.
    ``minima``: the slab minima when the product came with them (then there is no tail)."""
    n, c = work.shape
    per_slab = c // _SLABS
    body = per_slab * _SLABS
    if minima is None:
        minima = work[:, :body].reshape(n, _SLABS, per_slab).min(axis=1)
    tail = work[:, body:]
    low = minima.min(axis=1) if body == c else np.minimum(minima.min(axis=1), tail.min(axis=1))
    kth_bound = low if k == 1 else np.partition(minima, k - 1, axis=1)[:, k - 1]
    wide, _ = _limits(low, kth_bound, tol, classes)
    columns = np.flatnonzero(minima <= wide[:, None])  # into minima: row * per_slab + column
    if columns.size * _SLABS * _DENSE > work.size:
        return None
    rows, column = np.divmod(columns, per_slab)
    flat = (rows * c + column)[:, None] + np.arange(0, body, per_slab)  # [P, _SLABS] into work
    flat = flat[np.take(work.reshape(-1), flat) <= wide[rows, None]]
    if body < c:
        tail_rows, tail_column = np.divmod(np.flatnonzero(tail <= wide[:, None]), c - body)
        flat = np.concatenate([flat, tail_rows * c + body + tail_column])
    flat.sort()
    values, rows = work.reshape(-1)[flat], flat // c
    if k > 1:  # the true k-th smallest of each row is among its entries within the wide limits
        order = np.lexsort((values, rows))
        kth_bound = values[order][np.searchsorted(rows[order], np.arange(n)) + k - 1]
    limit, exact_below = _limits(low, kth_bound, tol, classes)
    return flat[values <= limit[rows]], exact_below


def _slab_product(matrix: np.ndarray, wanted: bool) -> SlabProduct | None:
    """The onnxruntime session for a big index's products; None (numpy's) where it cannot run."""
    try:
        return SlabProduct(matrix, _SLABS) if wanted else None
    except ModelError:
        return None


def product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a [N, D] @ b [D, C] -> [N, C] (dtype of a and b), split over columns when that keeps every
    BLAS call on this thread in a few calls (see ``_ONE_THREAD_MNK``). One row is one call: split, a
    query against 100,000 classes took 1.2 ms on one thread, unsplit 0.6 ms on two (lab/scale.py)."""
    n, d = a.shape
    c = b.shape[1]
    calls = math.ceil(max(n, 2) * c * d / _ONE_THREAD_MNK)
    if n == 1 or calls <= 1 or calls > _SPLIT_AT_MOST:
        return a @ b
    out = np.empty((n, c), dtype=np.result_type(a, b))
    step = math.ceil(c / calls)
    for start in range(0, c, step):
        np.matmul(a, b[:, start : start + step], out=out[:, start : start + step])
    return out
