"""Few-shot evaluation through the runtime: N-way K-shot episodes as index arithmetic (numpy only).

The data set is embedded once with the deployed ONNX path (``EmbeddingModel.embed_prepared``);
every episode then only gathers rows of that embedding matrix: prototypes are the means of the
support embeddings, queries go to the prototype at the smallest squared Euclidean distance
(after L2-normalizing the embeddings, not the prototypes, when the model's metric is ``cosine``:
exactly what ``FewShotClassifier`` does, so thresholds mean the same here and there).

Sampling is vectorized over blocks of episodes from one ``np.random.Generator(seed)``, so a
seed fixes every episode. ``within_group`` (Omniglot ``--within-alphabet``) draws all classes of
an episode, unknown ones included, from one group; the group is drawn with probability
proportional to its number of eligible classes, so every eligible class is equally likely to
appear, as in the mixed protocol.

Open set: ``unknown`` U extra classes per episode contribute Q queries each but are never
enrolled. The rejection score is the distance to the nearest prototype; AUROC (pooled over all
episodes) says how well it separates unknown from known queries; a query is rejected as the
classifier would reject it (``rejection.OperatingPoint.accepts`` with the episode's shots and way).
``threshold`` in the result is the median squared-distance limit it set for known queries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgemeta.runtime import nearest
from edgemeta.runtime.errors import DataError
from edgemeta.runtime.preprocess import check_query_views, query_offsets, support_offsets
from edgemeta.runtime.rejection import OperatingPoint

BLOCK_EPISODES = 50
Progress = Callable[[int], None]


@dataclass(frozen=True)
class EpisodeSpec:
    """way N enrolled classes, shot K support and query Q queries per class, unknown U extra classes."""

    way: int
    shot: int
    query: int = 15
    unknown: int = 0
    within_group: bool = False


@dataclass
class Episodes:
    """A block of E episodes as indices into the data set.

    classes: int64 [E, N + U], class ids; the first N are enrolled, the last U are unknown.
    support: int64 [E, N, K]; query: int64 [E, N + U, Q] (row i belongs to classes[:, i]).
    """

    classes: np.ndarray
    support: np.ndarray
    query: np.ndarray


@dataclass
class EvalResult:
    """Accuracies are fractions; ``ci95`` = 1.96 * std / sqrt(episodes) over per-episode accuracy."""

    accuracy: float
    ci95: float
    way: int
    shot: int
    query: int
    episodes: int
    unknown: int
    within_alphabet: bool
    seed: int
    metric: str
    classes_available: int
    threshold: float | None = None
    auroc: float | None = None
    open_accuracy: float | None = None
    open_ci95: float | None = None
    false_accept_rate: float | None = None
    false_reject_rate: float | None = None
    rejection: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EpisodeSampler:
    """Draws reproducible episodes from ``targets`` (int64 [M]) and per-class ``groups``."""

    def __init__(self, targets: np.ndarray, spec: EpisodeSpec, groups: Sequence[str] | None = None) -> None:
        _check_spec(spec)
        self.spec = spec
        targets = np.asarray(targets, dtype=np.int64)
        counts = np.bincount(targets) if targets.size else np.zeros(0, np.int64)
        self._order = np.argsort(targets, kind="stable")
        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        self._counts = counts
        need = spec.shot + spec.query
        self.eligible = np.flatnonzero(counts >= need)
        total = spec.way + spec.unknown
        if len(counts) < total:
            raise DataError(f"--way {spec.way}{_plus_unknown(spec)} needs {total} classes; the data has {len(counts)}")
        if len(self.eligible) < total:
            raise DataError(
                f"--shot {spec.shot} + --query {spec.query} needs {need} examples per class; only "
                f"{len(self.eligible)} classes have that many (at most {int(counts.max(initial=0))}), "
                f"{total} needed"
            )
        self._groups = self._group_table(groups) if spec.within_group else None

    def _group_table(self, groups: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray]:
        """Padded int64 [G, maxG] of eligible class ids per usable group (-1 pad), and weights [G]."""
        if groups is None or len(groups) != len(self._counts) or not any(groups):
            raise DataError("--within-alphabet needs a data source with alphabets (Omniglot)")
        members: dict[str, list[int]] = {}
        for c in self.eligible:
            members.setdefault(groups[c], []).append(int(c))
        total = self.spec.way + self.spec.unknown
        usable = [m for m in members.values() if len(m) >= total]
        if not usable:
            biggest = max(len(m) for m in members.values())
            raise DataError(
                f"--within-alphabet: no alphabet has {total} classes for --way {self.spec.way}"
                f"{_plus_unknown(self.spec)} (the largest has {biggest})"
            )
        table = np.full((len(usable), max(len(m) for m in usable)), -1, dtype=np.int64)
        for g, m in enumerate(usable):
            table[g, : len(m)] = m
        sizes = np.array([len(m) for m in usable], dtype=np.float64)
        return table, sizes / sizes.sum()

    def sample(self, rng: np.random.Generator, episodes: int) -> Episodes:
        """``episodes`` episodes drawn from ``rng``."""
        classes = self._sample_classes(rng, episodes)
        k, q = self.spec.shot, self.spec.query
        counts = self._counts[classes]  # [E, N+U]
        keys = rng.random((*classes.shape, int(counts.max())))
        keys[np.arange(keys.shape[-1]) >= counts[..., None]] = 2.0  # never pick padding
        pos = np.argsort(keys, axis=-1)[..., : k + q]  # distinct per class
        idx = self._order[self._starts[classes][..., None] + pos]  # [E, N+U, K+Q]
        n = self.spec.way
        return Episodes(classes, np.ascontiguousarray(idx[:, :n, :k]), np.ascontiguousarray(idx[:, :, k:]))

    def _sample_classes(self, rng: np.random.Generator, episodes: int) -> np.ndarray:
        total = self.spec.way + self.spec.unknown
        if self._groups is None:
            keys = rng.random((episodes, len(self.eligible)))
            return self.eligible[np.argsort(keys, axis=1)[:, :total]]
        table, weights = self._groups
        g = rng.choice(len(table), size=episodes, p=weights)
        rows = table[g]  # [E, maxG]
        keys = rng.random(rows.shape)
        keys[rows < 0] = 2.0
        return np.take_along_axis(rows, np.argsort(keys, axis=1)[:, :total], axis=1)


def _plus_unknown(spec: EpisodeSpec) -> str:
    return f" + --unknown {spec.unknown}" if spec.unknown else ""


def _check_spec(spec: EpisodeSpec) -> None:
    for name in ("way", "shot", "query"):
        if getattr(spec, name) < 1:
            raise DataError(f"--{name} must be at least 1, got {getattr(spec, name)}")
    if spec.unknown < 0:
        raise DataError(f"--unknown must be 0 or more, got {spec.unknown}")


def embed_all(
    model: Any, images: np.ndarray, batch_size: int = 512, progress: Progress | None = None, support_shift: int = 0
) -> np.ndarray:
    """uint8 [M, H, W, C] (already prepared) -> float32 [M, D] through ``model.embed_prepared``, or
    with ``support_shift`` > 0 as enrolled images are embedded (over ``support_offsets(support_shift)``)."""
    out = np.empty((len(images), model.embedding_dim), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        out[start : start + len(batch)] = model.embed_prepared(
            batch, support_offsets(support_shift) if support_shift else None, batch_size=batch_size
        )
        if progress is not None:
            progress(len(batch))
    return out


def embed_all_queries(
    model: Any, images: np.ndarray, views: int, batch_size: int = 512, progress: Progress | None = None
) -> np.ndarray:
    """``embed_all`` for queries as ``FewShotClassifier(query_views=views)`` embeds them: the mean
    over ``QUERY_VIEW_OFFSETS[views]`` shifted copies (views 1: as they are)."""
    if check_query_views(views) == 1:
        return embed_all(model, images, batch_size, progress)
    out = np.empty((len(images), model.embedding_dim), dtype=np.float32)
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size]
        out[start : start + len(batch)] = model.embed_prepared(batch, query_offsets(views), batch_size=batch_size)
        if progress is not None:
            progress(len(batch))
    return out


def embed_all_support(
    model: Any, images: np.ndarray, shift: int, batch_size: int = 512, progress: Progress | None = None
) -> np.ndarray:
    """``embed_all`` for support images: the mean over each image's shifted views."""
    return embed_all(model, images, batch_size, progress, support_shift=shift)


def score_block(emb: np.ndarray, ep: Episodes, support_emb: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``nearest_block``'s ``correct`` and ``min_dist``."""
    correct, min_dist, _ = nearest_block(emb, ep, support_emb)
    return correct, min_dist


def nearest_block(
    emb: np.ndarray, ep: Episodes, support_emb: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest-prototype decisions for a block of episodes.

    emb: float32 [M, D] (already L2-normalized for ``cosine``); support_emb: float32 [M, D], the
    same images embedded as support (``embed_all(..., support_shift=...)``), default ``emb``.
    Returns ``correct`` bool [E, (N+U) * Q] (always False for unknown queries) and ``min_dist``
    float32 [E, (N+U) * Q], the squared distance to the nearest prototype, and ``nearest_sq_norm``
    float32 [E, (N+U) * Q], that prototype's squared length (for the rejection rule); queries are
    ordered class-major, known classes first.
    """
    e, n, _ = ep.support.shape
    protos = nearest.class_means((emb if support_emb is None else support_emb)[ep.support])  # [E, N, D]
    queries = emb[ep.query.reshape(e, -1)]  # [E, T, D]
    proto_sq = nearest.squared_norms(protos)  # [E, N]
    # in the embeddings' dtype (float32 from the runtime), as every recorded accuracy figure was
    # measured: float64 would be more exact but could flip near-ties
    dist = nearest.squared_distances(queries, protos, queries.dtype, proto_sq)  # [E, T, N]
    q = ep.query.shape[2]
    truth = np.repeat(np.arange(ep.query.shape[1]), q)  # unknown rows have ids >= N
    best = dist.argmin(axis=2)
    return best == truth[None, :], dist.min(axis=2), np.take_along_axis(proto_sq, best, axis=1)


def auroc(known: np.ndarray, unknown: np.ndarray) -> float:
    """P(score of an unknown > score of a known), ties counting one half (Mann-Whitney U)."""
    known = np.sort(np.asarray(known, dtype=np.float64).ravel())
    unknown = np.asarray(unknown, dtype=np.float64).ravel()
    if known.size == 0 or unknown.size == 0:
        return float("nan")
    below = np.searchsorted(known, unknown, side="left")
    ties = np.searchsorted(known, unknown, side="right") - below
    return float((below.sum() + 0.5 * ties.sum()) / (known.size * unknown.size))


def _mean_ci(per_episode: np.ndarray) -> tuple[float, float]:
    n = len(per_episode)
    return float(per_episode.mean()), float(1.96 * per_episode.std() / math.sqrt(n))


def evaluate(
    emb: np.ndarray,
    targets: np.ndarray,
    spec: EpisodeSpec,
    episodes: int,
    seed: int = 0,
    *,
    groups: Sequence[str] | None = None,
    metric: str = "sqeuclidean",
    threshold: float | None = None,
    progress: Progress | None = None,
    support_emb: np.ndarray | None = None,
    rejection: OperatingPoint | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes on embeddings ``emb`` (float32 [M, D]) labelled by ``targets`` (int64 [M]);
    prototypes from ``support_emb`` (float32 [M, D], the images embedded as support) when given.
    Unknown queries are rejected by ``rejection``, else by one squared distance ``threshold``."""
    if episodes < 1:
        raise DataError(f"--episodes must be at least 1, got {episodes}")
    if len(emb) != len(targets):
        raise ValueError(f"{len(emb)} embeddings for {len(targets)} targets")
    sampler = EpisodeSampler(targets, spec, groups)
    rng = np.random.default_rng(seed)
    emb = nearest.l2_normalize(emb) if metric == "cosine" else np.asarray(emb, dtype=np.float32)
    if support_emb is not None:
        if support_emb.shape != emb.shape:
            raise ValueError(f"support embeddings {support_emb.shape} do not match {emb.shape}")
        support_emb = (
            nearest.l2_normalize(support_emb) if metric == "cosine" else np.asarray(support_emb, dtype=np.float32)
        )
    known_n = spec.way * spec.query
    acc, correct_all, dist_all, norm_all = [], [], [], []
    for start in range(0, episodes, BLOCK_EPISODES):
        block = min(BLOCK_EPISODES, episodes - start)
        correct, min_dist, sq_norm = nearest_block(emb, sampler.sample(rng, block), support_emb)
        acc.append(correct[:, :known_n].mean(axis=1))
        correct_all.append(correct)
        dist_all.append(min_dist)
        norm_all.append(sq_norm)
        if progress is not None:
            progress(block)
    accuracy, ci95 = _mean_ci(np.concatenate(acc))
    result = EvalResult(
        accuracy,
        ci95,
        spec.way,
        spec.shot,
        spec.query,
        episodes,
        spec.unknown,
        spec.within_group,
        seed,
        metric,
        len(sampler.eligible),
    )
    if rejection is None:
        rejection = OperatingPoint(threshold, name="threshold" if threshold is not None else "off")
    _open_set(
        result, np.concatenate(correct_all), np.concatenate(dist_all), np.concatenate(norm_all), known_n, rejection
    )
    return result


def _open_set(
    result: EvalResult,
    correct: np.ndarray,
    min_dist: np.ndarray,
    sq_norm: np.ndarray,
    known_n: int,
    rejection: OperatingPoint,
) -> None:
    """Fill the rejection figures of ``result`` from correct / min_dist / the nearest prototype's
    squared length (all [E, T]); ``result.threshold`` is the median limit over known queries."""
    limits = rejection.limits(result.shot, result.way, sq_norm)
    # AUROC of the rule's own score, d / limit (the plain distance when it has no limits)
    score = min_dist / limits if rejection.tau is not None else min_dist
    if min_dist.shape[1] > known_n:
        result.auroc = auroc(score[:, :known_n], score[:, known_n:])
    if rejection.tau is None:
        return
    result.rejection = rejection.to_dict()
    result.threshold = float(np.median(limits[:, :known_n]))
    accepted = rejection.accepts(min_dist, result.shot, result.way, sq_norm)
    right = np.concatenate([correct[:, :known_n] & accepted[:, :known_n], ~accepted[:, known_n:]], axis=1)
    result.open_accuracy, result.open_ci95 = _mean_ci(right.mean(axis=1))
    result.false_reject_rate = float((~accepted[:, :known_n]).mean())
    if min_dist.shape[1] > known_n:
        result.false_accept_rate = float(accepted[:, known_n:].mean())
