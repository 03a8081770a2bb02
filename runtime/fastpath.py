"""The batch-1 fast path: one query among up to ``EXACT_CLASSES`` classes.

The same float64 arithmetic as ``PrototypeIndex._exact`` (runtime/prototype_index.py) on 1-D
arrays, in about half as many numpy calls: at batch 1 each call's fixed cost (about a
microsecond) is a large part of what the runtime adds to the network call, while the general
path's [N, k] bookkeeping buys nothing for one row. The embedding itself comes from
``EmbeddingModel.embed``, whose one-image path runs on bound buffers with a lookup-table
normalizer.
"""

from __future__ import annotations

import numpy as np

from .nearest import top_k
from .prototype_index import PrototypeIndex


def applies(index: PrototypeIndex, queries: np.ndarray) -> bool:
    """Whether ``nearest_one`` serves these queries (float32 [N, D])."""
    return queries.shape[0] == 1 and index.exact


def nearest_one(index: PrototypeIndex, query: np.ndarray, k: int) -> list[tuple[int, float, float]]:
    """query float32 [1, D] -> its ``k`` nearest classes, nearest first, as (class index, score,
    squared distance); what ``index.search`` answers (the same float64 formula; sums taken in
    another order can differ in the last bit)."""
    q = query[0].astype(np.float64)
    # ndarray.dot, not @: on 1-D arrays the matmul ufunc's dispatch costs about 1.5 us more a call.
    partial = q.dot(index.minus_2_t)  # [C]: ||p||^2 - 2 q.p after the next line
    partial += index.sq_norms
    order = [int(partial.argmin())] if k == 1 else top_k(partial[None], min(k, partial.shape[0]))[0].tolist()
    weights = np.exp(partial[order[0]] - partial)
    total = float(weights.sum())
    q_sq = float(q.dot(q))
    return [(j, float(weights[j]) / total, max(float(partial[j]) + q_sq, 0.0)) for j in order]
