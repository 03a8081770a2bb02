"""Choosing the rejection threshold recorded in a model: a quantile of genuine queries' distances."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgemeta.runtime.errors import DataError
from edgemeta.runtime.evaluation import EpisodeSampler, EpisodeSpec, evaluate, score_block

from .verify import episode_spec

ACCEPT = 0.95


def choose_threshold(emb: np.ndarray, targets: np.ndarray, metric: str, *, accept: float = ACCEPT,
                     way: int = 5, shot: int = 5, episodes: int = 200, seed: int = 0,
                     support_emb: np.ndarray | None = None) -> tuple[float | None, dict[str, Any]]:
    """The squared distance that accepts ``accept`` of genuine queries in ``way``-way ``shot``-shot episodes.

    emb: float32 [M, D] validation embeddings; targets: int64 [M]; support_emb: float32 [M, D], the
    same images embedded as enrolled ones are (default ``emb``). Returns (threshold, how it was
    chosen, with the false-accept rate on queries of classes left out of each episode when the data
    has enough classes), or (None, reason) when the data cannot make such episodes.
    """
    spec = episode_spec(targets, way, shot)
    if metric == "cosine":
        emb = _unit(emb)
        support_emb = None if support_emb is None else _unit(support_emb)
    try:
        ep = EpisodeSampler(targets, spec).sample(np.random.default_rng(seed), episodes)
    except DataError as e:
        return None, {"method": "none", "reason": str(e)}
    _, min_dist = score_block(emb, ep, support_emb)
    threshold = float(np.quantile(min_dist, accept))
    if not (np.isfinite(threshold) and threshold > 0):
        return None, {"method": "none", "reason": f"degenerate distances (quantile {threshold})"}
    how = {"method": "quantile", "accept_genuine": accept, "distance": "squared euclidean to nearest prototype",
           "way": way, "shot": shot, "query": spec.query, "episodes": episodes, "seed": seed}
    how.update(open_set_figures(emb, targets, metric, threshold, spec, episodes, seed + 1, support_emb))
    return threshold, how


def _unit(emb: np.ndarray) -> np.ndarray:
    return emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)


def open_set_figures(emb: np.ndarray, targets: np.ndarray, metric: str, threshold: float, spec: EpisodeSpec,
                     episodes: int, seed: int, support_emb: np.ndarray | None = None) -> dict[str, Any]:
    """False reject / false accept rates and AUROC at ``threshold`` with ``spec.way`` unknown classes per episode."""
    open_spec = EpisodeSpec(spec.way, spec.shot, spec.query, unknown=spec.way)
    try:
        r = evaluate(emb, targets, open_spec, episodes, seed, metric="sqeuclidean", threshold=threshold,
                     support_emb=support_emb)
    except DataError:
        return {}
    # emb is already unit length for cosine, so "sqeuclidean" here is the runtime's cosine rule.
    return {"false_reject_rate": r.false_reject_rate, "false_accept_rate": r.false_accept_rate,
            "auroc": r.auroc, "unknown_classes": spec.way}
