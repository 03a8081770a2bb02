"""Calibrating the rejection rule a model records (runtime/rejection.py) on classes it never trained on.

Open-set episodes (``way`` enrolled classes and as many unknown ones, every shot count of
``CAL_SHOTS``, every way of ``CAL_WAYS``) give genuine and unknown queries' nearest distances, relative
to the nearest prototype's squared length (r = d / ||p||^2, as the rule compares them). beta
comes from how the mean genuine distance shrinks with shots (a least-squares fit of a + b / k:
beta = b / a); gamma from how the equal-error limit falls with the number of classes (a power law
fitted over the ways); the taus from the error rates of the normalized distance
r / ((1 + beta / k) * C ** -gamma), averaged over the episode kinds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgemeta.lab.evaluation import EpisodeSampler, EpisodeSpec, nearest_block
from edgemeta.runtime.errors import DataError
from edgemeta.runtime.nearest import for_metric
from edgemeta.runtime.rejection import STRICT_FAR, OperatingPoint, RejectionRule

CAL_WAYS = (5, 20)
CAL_SHOTS = (1, 2, 5)
FAR_POINTS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3)
Kind = tuple[int, int, np.ndarray, np.ndarray]  # way, shot, genuine r [n], unknown r [m]


def calibrate_rejection(
    emb: np.ndarray,
    targets: np.ndarray,
    metric: str,
    *,
    support_emb: np.ndarray | None = None,
    episodes: int = 200,
    seed: int = 0,
    query: int = 5,
    ways: tuple[int, ...] = CAL_WAYS,
    shots: tuple[int, ...] = CAL_SHOTS,
) -> tuple[RejectionRule | None, dict[str, Any]]:
    """The rule fitted on emb float32 [M, D] (queries) / support_emb float32 [M, D] (the same images
    embedded as enrolled ones are, default ``emb``) of classes targets int64 [M]; (None, reason) when
    the data cannot make open-set episodes."""
    emb = for_metric(emb, metric)
    support_emb = None if support_emb is None else for_metric(support_emb, metric)
    kinds, sq_norm = open_set_distances(emb, targets, support_emb, ways, shots, episodes, seed, query)
    if not kinds:
        return None, {"method": "none", "reason": "the data cannot make open-set episodes (too few classes or images)"}
    beta = fit_shot_coef(kinds)
    gamma = fit_class_coef(kinds, beta)
    grid, frr, far = error_curves(_normalized(kinds, beta, gamma))
    table = tuple((f, tau_at(grid, far, f)) for f in FAR_POINTS)
    rule = RejectionRule(beta, gamma, tau_at(grid, far, STRICT_FAR), equal_error_tau(grid, frr, far), table)
    how = {
        "method": "open-set episodes",
        "episodes": episodes,
        "seed": seed,
        "query": query,
        "strict_far": STRICT_FAR,
        "median_sq_norm": sq_norm,
        "kinds": [{"way": w, "shot": s, **_rates(rule, w, s, k, u)} for w, s, k, u in kinds],
    }
    return rule, how


def legacy_threshold(rule: RejectionRule, sq_norm: float) -> float:
    """The metadata's one ``threshold``, for readers that predate the rejection section: the balanced
    limit of a 1-shot class among 5 whose prototype has the calibration's median squared length."""
    return float(OperatingPoint(rule.balanced, rule.shot_coef, rule.class_coef, True).limits(1, 5, sq_norm))


def open_set_distances(
    emb: np.ndarray,
    targets: np.ndarray,
    support_emb: np.ndarray | None,
    ways: tuple[int, ...],
    shots: tuple[int, ...],
    episodes: int,
    seed: int,
    query: int,
) -> tuple[list[Kind], float]:
    """Nearest relative distances of genuine and unknown queries per (way, shot) the data allows, and
    the median squared length of the nearest prototypes."""
    most = int(np.bincount(targets).max()) if len(targets) else 0
    kinds, norms = [], []
    for way in ways:
        for shot in shots:
            spec = EpisodeSpec(way, shot, max(1, min(query, most - shot)), unknown=way)
            try:
                ep = EpisodeSampler(targets, spec).sample(np.random.default_rng([seed, way, shot]), episodes)
            except DataError:
                continue
            _, d, sq_norm = nearest_block(emb, ep, support_emb)
            r = d.astype(np.float64) / np.maximum(sq_norm, 1e-12)
            known = way * spec.query
            kinds.append((way, shot, r[:, :known].ravel(), r[:, known:].ravel()))
            norms.append(sq_norm.ravel())
    return kinds, float(np.median(np.concatenate(norms))) if norms else 0.0


def fit_shot_coef(kinds: list[Kind]) -> float:
    """beta of mean genuine distance = a * (1 + beta / k), least squares over the shot counts (0 with one)."""
    shots = sorted({s for _, s, _, _ in kinds})
    if len(shots) < 2:
        return 0.0
    means = [np.mean(np.concatenate([k for _, s, k, _ in kinds if s == shot])) for shot in shots]
    b, a = np.polyfit(1.0 / np.array(shots, dtype=np.float64), means, 1)
    return float(max(b / a, 0.0)) if a > 0 else 0.0


def fit_class_coef(kinds: list[Kind], beta: float) -> float:
    """gamma of equal-error limit ~ C ** -gamma, least squares over the ways (0 with one)."""
    ways = sorted({w for w, _, _, _ in kinds})
    if len(ways) < 2:
        return 0.0
    taus = [equal_error_tau(*error_curves(_normalized([x for x in kinds if x[0] == w], beta, 0.0))) for w in ways]
    slope = np.polyfit(np.log(ways), np.log(taus), 1)[0]
    return float(max(-slope, 0.0))


def _normalized(kinds: list[Kind], beta: float, gamma: float) -> list[tuple[np.ndarray, np.ndarray]]:
    """(genuine, unknown) distances of each kind divided by the rule's factor, so that one tau serves all."""
    scale = [(1 + beta / shot) * float(way) ** -gamma for way, shot, _, _ in kinds]
    return [(k / f, u / f) for f, (_, _, k, u) in zip(scale, kinds)]


def equal_error_tau(grid: np.ndarray, frr: np.ndarray, far: np.ndarray) -> float:
    """The first grid tau where false rejects no longer exceed false accepts."""
    return float(grid[int(np.argmax(frr <= far))])


def error_curves(normed: list[tuple[np.ndarray, np.ndarray]], points: int = 4001) -> tuple[np.ndarray, ...]:
    """A grid of taus float64 [P] and the false reject / accept rates there [P], each the mean over kinds."""
    grid = np.unique(np.quantile(np.concatenate([np.concatenate(p) for p in normed]), np.linspace(0, 1, points)))
    frr = np.mean([1 - np.searchsorted(np.sort(k), grid, side="right") / k.size for k, _ in normed], axis=0)
    far = np.mean([np.searchsorted(np.sort(u), grid, side="right") / u.size for _, u in normed], axis=0)
    return grid, frr, far


def tau_at(grid: np.ndarray, far: np.ndarray, target: float) -> float:
    """The largest grid tau whose false-accept rate is at most ``target`` (the smallest tau when none is)."""
    return float(grid[max(int(np.searchsorted(far, target, side="right")) - 1, 0)])


def _rates(rule: RejectionRule, way: int, shot: int, known: np.ndarray, unknown: np.ndarray) -> dict[str, float]:
    out = {}
    for name in ("strict", "balanced"):
        op = OperatingPoint(getattr(rule, name), rule.shot_coef, rule.class_coef, True, name)
        out[f"{name}_frr"] = float((~op.accepts(known, shot, way, 1.0)).mean())  # r: distances already relative
        out[f"{name}_far"] = float(op.accepts(unknown, shot, way, 1.0).mean())
    return out
