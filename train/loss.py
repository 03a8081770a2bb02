"""Prototypical-network loss as pure functions over batches of episodes.

Layout everywhere: E episodes, N classes (way), K support and Q query examples per class,
D embedding dimensions. Embeddings of one step are ``[E, N, K + Q, D]``: class-major, the
K support examples of a class first, then its Q queries.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

METRICS = ("sqeuclidean", "cosine")
# Cosine similarities live in [-1, 1]; a fixed temperature makes the softmax sharp enough to learn.
COSINE_SCALE = 10.0


def prototypes(support: torch.Tensor) -> torch.Tensor:
    """Class means: support [E, N, K, D] -> prototypes [E, N, D]."""
    return support.mean(dim=2)


def distances(queries: torch.Tensor, protos: torch.Tensor, metric: str = "sqeuclidean") -> torch.Tensor:
    """queries [E, M, D], prototypes [E, N, D] -> distances [E, M, N] (smaller is closer).

    sqeuclidean: ``|q|^2 - 2 q.p + |p|^2`` with one batched matmul, the formula the runtime predicts
    with (``edgemeta.runtime.nearest.squared_distances``; tests/test_nearest.py checks that the logits
    equal minus its distances); cosine: ``1 - cos``.
    """
    if metric == "sqeuclidean":
        qq = queries.pow(2).sum(-1, keepdim=True)
        pp = protos.pow(2).sum(-1).unsqueeze(1)
        return (qq + pp - 2.0 * torch.bmm(queries, protos.transpose(1, 2))).clamp_min(0.0)
    if metric == "cosine":
        return 1.0 - torch.bmm(F.normalize(queries, dim=-1), F.normalize(protos, dim=-1).transpose(1, 2))
    raise ValueError(f"unknown metric {metric!r}; one of {METRICS}")


def episode_logits(
    embeddings: torch.Tensor, shot: int, metric: str = "sqeuclidean"
) -> tuple[torch.Tensor, torch.Tensor]:
    """embeddings [E, N, K + Q, D] -> (logits [E, N * Q, N], labels [N * Q]).

    Query ``n * Q + j`` belongs to class n. Computed in float32 whatever the autocast dtype.
    """
    emb = embeddings.float()
    e, n, _, d = emb.shape
    protos = prototypes(emb[:, :, :shot])
    queries = emb[:, :, shot:].reshape(e, -1, d)
    q = queries.shape[1] // n
    dist = distances(queries, protos, metric)
    scale = COSINE_SCALE if metric == "cosine" else 1.0
    labels = torch.arange(n, device=emb.device).repeat_interleave(q)
    return -scale * dist, labels


def prototypical_loss(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [E, M, N], labels [M] -> (mean cross-entropy, accuracy), both 0-d tensors."""
    e, m, n = logits.shape
    flat = logits.reshape(e * m, n)
    target = labels.repeat(e)
    loss = F.cross_entropy(flat, target)
    acc = (flat.argmax(-1) == target).float().mean()
    return loss, acc


def per_episode_accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits [E, M, N], labels [M] -> accuracy per episode [E]."""
    return (logits.argmax(-1) == labels).float().mean(-1)
