"""Always-on verification of an exported model: ONNX checker, numeric parity, same decisions.

Embeddings are compared on real (prepared) images; decisions are nearest-prototype labels in
few-shot episodes drawn with ``edgemeta.lab.evaluation`` (the runtime's own sampler), so
"identical decisions" means what a deployed classifier would answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgemeta.runtime.errors import DataError
from edgemeta.lab.evaluation import EpisodeSampler, EpisodeSpec, evaluate
from edgemeta.runtime.preprocess import PreprocessSpec, normalize, shifted_views

from .checkpoint import ExportError

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


def session(model_bytes: bytes, threads: int | None = None, optimize: bool = True):
    """A CPU onnxruntime session for the serialized model."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads:
        opts.intra_op_num_threads = threads
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


def embed_onnx(sess, images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Prepared uint8 [M, H, W, C] -> float32 [M, D] through an onnxruntime session."""
    name = sess.get_inputs()[0].name
    parts = [sess.run(None, {name: normalize(images[i:i + BATCH], spec)})[0] for i in range(0, len(images), BATCH)]
    return np.concatenate(parts).astype(np.float32, copy=False)


def embed_onnx_support(sess, images: np.ndarray, spec: PreprocessSpec, shift: int) -> np.ndarray:
    """Prepared uint8 [M, H, W, C] -> float32 [M, D] as the runtime embeds images it enrolls: the
    mean over each image's shifted views (``EmbeddingModel.embed_prepared_support``)."""
    if shift == 0:
        return embed_onnx(sess, images, spec)
    views = shifted_views(images, shift)                                    # [V, M, H, W, C]
    emb = embed_onnx(sess, views.reshape(-1, *views.shape[2:]), spec)      # [V * M, D]
    return emb.reshape(views.shape[0], len(images), -1).mean(axis=0)


def embed_torch(model, images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Prepared uint8 [M, H, W, C] -> float32 [M, D] through the torch network (eval mode, CPU)."""
    import torch

    parts = []
    with torch.inference_mode():
        for i in range(0, len(images), BATCH):
            parts.append(model(torch.from_numpy(normalize(images[i:i + BATCH], spec))).numpy())
    return np.concatenate(parts).astype(np.float32, copy=False)


def episode_spec(targets: np.ndarray, way: int = 5, shot: int = 1, query: int = 15) -> EpisodeSpec:
    """``way``-way ``shot``-shot episodes with as many queries (<= ``query``) as the data allows."""
    most = int(np.bincount(targets).max()) if len(targets) else 0
    return EpisodeSpec(way=way, shot=shot, query=max(1, min(query, most - shot)))


def decisions(emb: np.ndarray, targets: np.ndarray, spec: EpisodeSpec, episodes: int, seed: int,
              metric: str) -> np.ndarray:
    """Nearest-prototype class index per query, int64 [episodes, way * query] (seeded episodes)."""
    if metric == "cosine":
        emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    try:
        ep = EpisodeSampler(targets, spec).sample(np.random.default_rng(seed), episodes)
    except DataError as e:
        raise ExportError(f"verification data cannot make {spec.way}-way {spec.shot}-shot episodes: {e}") from None
    protos = emb[ep.support].mean(axis=2)                                     # [E, N, D]
    queries = emb[ep.query.reshape(episodes, -1)]                             # [E, T, D]
    dist = ((queries[:, :, None, :] - protos[:, None, :, :]) ** 2).sum(-1)    # [E, T, N]
    return dist.argmin(axis=2)


def same_decisions(a: np.ndarray, b: np.ndarray, targets: np.ndarray, metric: str, episodes: int = 200,
                   seed: int = 0) -> np.ndarray:
    """bool [episodes, way * query]: whether embeddings ``a`` and ``b`` (float32 [M, D] of the same
    images) give the same nearest-prototype answer to each query of seeded 5-way 1-shot episodes."""
    spec = episode_spec(targets)
    return decisions(a, targets, spec, episodes, seed, metric) == decisions(b, targets, spec, episodes, seed, metric)


def compare(reference: np.ndarray, candidate: np.ndarray, targets: np.ndarray, metric: str, tol: Tolerance,
            episodes: int = 200, seed: int = 0) -> dict[str, Any]:
    """Check ``candidate`` embeddings (float32 [M, D]) against ``reference``; raise ExportError on failure.

    Returns the figures: max_abs_diff, mean/min cosine similarity, decision agreement.
    """
    if candidate.shape != reference.shape:
        raise ExportError(f"{tol.name} model returns {candidate.shape}, torch {reference.shape}")
    if not np.all(np.isfinite(candidate)):
        raise ExportError(f"{tol.name} model returns non-finite embeddings")
    diff = float(np.abs(candidate - reference).max(initial=0.0))
    cos = _cosine(reference, candidate)
    same = same_decisions(reference, candidate, targets, metric, episodes, seed)
    report = {"max_abs_diff": diff, "mean_cosine": float(cos.mean()), "min_cosine": float(cos.min()),
              "decision_agreement": float(same.mean()), "decisions": int(same.size), "episodes": episodes,
              "images": int(len(reference)), "tolerance": tol.name}
    if tol.max_abs is not None and not diff <= tol.max_abs:
        raise ExportError(f"{tol.name} ONNX embeddings differ from torch by {diff:.3g} (limit {tol.max_abs:g})")
    if tol.min_cosine is not None and not report["mean_cosine"] >= tol.min_cosine:
        raise ExportError(f"{tol.name} embeddings have mean cosine similarity {report['mean_cosine']:.4f} to fp32 (limit {tol.min_cosine})")
    if report["decision_agreement"] < tol.min_agreement:
        raise ExportError(f"{tol.name} model changes {int((~same).sum())} of {same.size} nearest-prototype decisions "
                          f"in {episodes} episodes (agreement {report['decision_agreement']:.4f}, limit {tol.min_agreement})")
    return report


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    both_zero = (na == 0) & (nb == 0)   # an all-zero embedding reproduced exactly is a match
    cos = (a * b).sum(1) / np.maximum(na * nb, 1e-30)
    return np.where(both_zero, 1.0, cos)


def few_shot_accuracy(emb: np.ndarray, targets: np.ndarray, metric: str, way: int = 5, shot: int = 1,
                      episodes: int = 600, seed: int = 0) -> dict[str, Any]:
    """N-way K-shot accuracy and 95% CI on ``emb`` via the runtime's ``evaluate``."""
    spec = episode_spec(targets, way, shot)
    try:
        r = evaluate(emb, targets, spec, episodes, seed, metric=metric)
    except DataError as e:
        raise ExportError(f"verification data cannot make {way}-way {shot}-shot episodes: {e}") from None
    return {"accuracy": r.accuracy, "ci95": r.ci95, "way": way, "shot": shot, "query": spec.query,
            "episodes": episodes, "seed": seed}
