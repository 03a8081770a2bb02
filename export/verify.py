"""Always-on verification of an exported model: ONNX checker, numeric parity, same decisions.

Embeddings are compared on real (prepared) images; decisions are nearest-prototype labels in
few-shot episodes drawn with ``edgemeta.lab.evaluation`` (the runtime's own sampler), so
"identical decisions" means what a deployed classifier would answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgemeta.lab.evaluation import EpisodeSampler, EpisodeSpec, evaluate
from edgemeta.runtime import nearest
from edgemeta.runtime.errors import DataError, ExportError
from edgemeta.runtime.model import mean_over_views
from edgemeta.runtime.preprocess import PreprocessSpec, normalize, support_offsets

BATCH = 256


@dataclass(frozen=True)
class Tolerance:
    """max_abs: largest |a - b| of any embedding value; min_cosine: smallest mean cosine similarity
    of paired embeddings; min_agreement: fraction of episode decisions that must be the same."""

    name: str
    max_abs: float | None
    min_cosine: float | None
    min_agreement: float


FP32 = Tolerance("fp32", max_abs=1e-4, min_cosine=None, min_agreement=1.0)
# int8 changes every value a little; what matters is that embeddings point the same way
# and that decisions barely move (the accuracy change is checked separately).
INT8 = Tolerance("int8", max_abs=None, min_cosine=0.99, min_agreement=0.97)


def check_onnx(proto) -> None:
    """``onnx.checker.check_model(full_check=True)``; an ExportError when it fails."""
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise ExportError(f"ONNX checker rejected the exported model: {str(e).splitlines()[0][:200]}") from None


def embed_onnx(sess, images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Prepared uint8 [M, H, W, C] -> float32 [M, D] through an onnxruntime session."""
    name = sess.get_inputs()[0].name
    parts = [sess.run(None, {name: normalize(images[i : i + BATCH], spec)})[0] for i in range(0, len(images), BATCH)]
    return np.concatenate(parts).astype(np.float32, copy=False)


def embed_onnx_support(sess, images: np.ndarray, spec: PreprocessSpec, shift: int) -> np.ndarray:
    """Prepared uint8 [M, H, W, C] -> float32 [M, D] as the runtime embeds images it enrolls: the
    runtime's own view averaging (``EmbeddingModel.embed_prepared(views=...)`` runs the same
    ``mean_over_views``), on a session of a file that has no metadata yet."""
    if shift == 0:
        return embed_onnx(sess, images, spec)
    return mean_over_views(lambda batch: embed_onnx(sess, batch, spec), images, support_offsets(shift))


def embed_torch(model, images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Prepared uint8 [M, H, W, C] -> float32 [M, D] through the torch network (eval mode, CPU)."""
    import torch

    parts = []
    with torch.inference_mode():
        for i in range(0, len(images), BATCH):
            parts.append(model(torch.from_numpy(normalize(images[i : i + BATCH], spec))).numpy())
    return np.concatenate(parts).astype(np.float32, copy=False)


def episode_spec(targets: np.ndarray, way: int = 5, shot: int = 1, query: int = 15) -> EpisodeSpec:
    """``way``-way ``shot``-shot episodes with as many queries (<= ``query``) as the data allows."""
    most = int(np.bincount(targets).max()) if len(targets) else 0
    return EpisodeSpec(way=way, shot=shot, query=max(1, min(query, most - shot)))


def decisions(
    emb: np.ndarray, targets: np.ndarray, spec: EpisodeSpec, episodes: int, seed: int, metric: str
) -> np.ndarray:
    """Nearest-prototype class index per query, int64 [episodes, way * query] (seeded episodes)."""
    emb = nearest.for_metric(emb, metric)
    try:
        ep = EpisodeSampler(targets, spec).sample(np.random.default_rng(seed), episodes)
    except DataError as e:
        raise ExportError(f"verification data cannot make {spec.way}-way {spec.shot}-shot episodes: {e}") from None
    protos = nearest.class_means(emb[ep.support])  # [E, N, D]
    queries = emb[ep.query.reshape(episodes, -1)]  # [E, T, D]
    return nearest.squared_distances(queries, protos).argmin(axis=2)  # float64 [E, T, N]


def same_decisions(
    a: np.ndarray, b: np.ndarray, targets: np.ndarray, metric: str, episodes: int = 200, seed: int = 0
) -> np.ndarray:
    """bool [episodes, way * query]: whether embeddings ``a`` and ``b`` (float32 [M, D] of the same
    images) give the same nearest-prototype answer to each query of seeded 5-way 1-shot episodes."""
    spec = episode_spec(targets)
    return decisions(a, targets, spec, episodes, seed, metric) == decisions(b, targets, spec, episodes, seed, metric)


def compare(
    reference: np.ndarray,
    candidate: np.ndarray,
    targets: np.ndarray,
    metric: str,
    tol: Tolerance,
    episodes: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Check ``candidate`` embeddings (float32 [M, D]) against ``reference``; raise ExportError on failure.

    Returns the figures: max_abs_diff, mean/min cosine similarity, decision agreement.
    """
    if candidate.shape != reference.shape:
        raise ExportError(f"{tol.name} model returns {candidate.shape}, torch {reference.shape}")
    if not np.all(np.isfinite(candidate)):
        raise ExportError(f"{tol.name} model returns non-finite embeddings")
    diff = float(np.abs(candidate - reference).max(initial=0.0))
    cos = paired_cosine(reference, candidate)
    same = same_decisions(reference, candidate, targets, metric, episodes, seed)
    report = {
        "max_abs_diff": diff,
        "mean_cosine": float(cos.mean()),
        "min_cosine": float(cos.min()),
        "decision_agreement": float(same.mean()),
        "decisions": int(same.size),
        "episodes": episodes,
        "images": int(len(reference)),
        "tolerance": tol.name,
    }
    if tol.max_abs is not None and not diff <= tol.max_abs:
        raise ExportError(f"{tol.name} ONNX embeddings differ from torch by {diff:.3g} (limit {tol.max_abs:g})")
    if tol.min_cosine is not None and not report["mean_cosine"] >= tol.min_cosine:
        raise ExportError(
            f"{tol.name} embeddings have mean cosine similarity {report['mean_cosine']:.4f} to fp32 (limit {tol.min_cosine})"
        )
    if report["decision_agreement"] < tol.min_agreement:
        raise ExportError(
            f"{tol.name} model changes {int((~same).sum())} of {same.size} nearest-prototype decisions "
            f"in {episodes} episodes (agreement {report['decision_agreement']:.4f}, limit {tol.min_agreement})"
        )
    return report


def paired_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """float [M]: cosine similarity of each row of a [M, D] with the same row of b [M, D]."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)  # an all-zero embedding reproduced exactly is a match
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-30)
    return np.where(both_zero, 1.0, cos)


def few_shot_accuracy(
    emb: np.ndarray, targets: np.ndarray, metric: str, way: int = 5, shot: int = 1, episodes: int = 600, seed: int = 0
) -> dict[str, Any]:
    """N-way K-shot accuracy and 95% CI on ``emb`` via the runtime's ``evaluate``."""
    spec = episode_spec(targets, way, shot)
    try:
        r = evaluate(emb, targets, spec, episodes, seed, metric=metric)
    except DataError as e:
        raise ExportError(f"verification data cannot make {way}-way {shot}-shot episodes: {e}") from None
    return {
        "accuracy": r.accuracy,
        "ci95": r.ci95,
        "way": way,
        "shot": shot,
        "query": spec.query,
        "episodes": episodes,
        "seed": seed,
    }
