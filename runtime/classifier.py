"""``FewShotClassifier``: class prototypes (mean embeddings) and nearest-prototype prediction.

State is per-class running sums and counts, so more shots can be added at any time. All
mutation happens under one lock; predictions read an immutable snapshot of the prototypes,
so many threads may enroll and predict at once.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .errors import EdgemetaError, StoreError
from .interchange import check_store_fits
from .model import EmbeddingModel
from .preprocess import check_query_views, check_support_shift
from .rejection import OperatingPoint, operating_point
from .store import StoreContents, check_label, read_store, write_store
from .store_lock import DEFAULT_LOCK_TIMEOUT, store_lock

# Up to this many classes one query's softmax is cheaper in Python floats than in numpy calls
# (each of which costs a few microseconds whatever its size).
_FEW_CLASSES = 24


class Prediction(NamedTuple):
    """One candidate class for a query: softmax ``score`` over negative squared distances."""

    label: str
    score: float
    distance: float


# tuple.__new__ builds a Prediction from a ready tuple without the namedtuple's keyword wrapper.
_new_prediction = tuple.__new__


@dataclass(frozen=True)
class _Snapshot:
    labels: tuple[str, ...]
    prototypes: np.ndarray      # float32 [C, D]
    partial_matrix: np.ndarray  # float64 [D + 1, C]: -2 * prototypes.T over a last row of ||p||^2
    minus_2_t: np.ndarray       # float64 [D, C]: the first D rows, a view
    sq_norms: np.ndarray        # float64 [C]: the last row, a view
    ones: np.ndarray            # float64 [C], for row sums by matrix-vector product
    counts: np.ndarray          # int64 [C]: shots per class, for the rejection rule


class FewShotClassifier:
    """Learns classes from a few examples each; classifies by nearest prototype."""

    def __init__(self, model: EmbeddingModel, threshold: float | None = None,
                 support_shift: int | None = None, query_views: int = 1, *, reject: str | None = None,
                 far: float | None = None) -> None:
        """``reject`` ("strict", "balanced" (default), "off") or a target false-accept rate ``far``
        picks the rejection operating point (runtime/rejection.py); ``threshold``, a squared
        distance, overrides both for every class alike."""
        self.model = model
        self.threshold, self.reject, self.far = threshold, reject, far
        self.operating_point()  # a bad choice fails here, not at the first classify
        self.support_shift = check_support_shift(model.meta.support_shift if support_shift is None else support_shift)
        # Test-time augmentation of queries: 3 views cost 3 network evaluations per query.
        self.query_views = check_query_views(query_views)
        self._cosine = model.meta.metric == "cosine"
        self._lock = threading.RLock()
        dim = model.embedding_dim
        self._index: dict[str, int] = {}
        self._order: list[str] = []
        self._sums = np.zeros((0, dim), dtype=np.float64)
        self._counts = np.zeros((0,), dtype=np.int64)
        self._ones_d = np.ones(dim)
        self._snapshot: _Snapshot | None = None

    # -- state -------------------------------------------------------------------------
    @property
    def labels(self) -> list[str]:
        with self._lock:
            return list(self._order)

    def counts(self) -> dict[str, int]:
        """Shots per label."""
        with self._lock:
            return {lab: int(self._counts[i]) for i, lab in enumerate(self._order)}

    def __len__(self) -> int:
        return len(self._order)

    def embed(self, images: Any) -> np.ndarray:
        """float32 [N, D] query embeddings as the classifier compares them: the mean over
        ``query_views`` shifted copies (see ``EmbeddingModel.embed_query``), unit length for cosine."""
        return self._unit(self.model.embed_query(images, self.query_views))

    def embed_support(self, images: Any) -> np.ndarray:
        """float32 [N, D] embeddings of images to enroll: the mean over their shifted views when
        ``support_shift`` > 0 (see ``EmbeddingModel.embed_support``), unit length for cosine."""
        return self._unit(self.model.embed_support(images, self.support_shift))

    def _unit(self, emb: np.ndarray) -> np.ndarray:
        if self._cosine:
            emb = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
        return emb

    def enroll(self, label: str, images: Any) -> int:
        """Add the images as examples of ``label``; returns the class's number of shots."""
        label = check_label(label)
        return self.add_embeddings(label, *self.support_sum(images))

    def support_sum(self, images: Any) -> tuple[np.ndarray, int]:
        """What ``enroll`` adds: the sum float64 [D] of the images' support embeddings and their
        number. Embed before ``update`` takes a store's lock, then ``add_embeddings`` inside it."""
        emb = self.embed_support(images).astype(np.float64)
        if not np.all(np.isfinite(emb)):
            raise EdgemetaError("the model produced non-finite embeddings for these images")
        return emb.sum(axis=0), emb.shape[0]

    def add_embeddings(self, label: str, total: np.ndarray, count: int) -> int:
        """Add ``count`` shots whose embeddings sum to ``total`` (float [D])."""
        check_label(label)
        with self._lock:
            row = self._index.get(label)
            if row is None:
                row = len(self._order)
                self._grow(row + 1)
                self._index[label] = row
                self._order.append(label)
                self._sums[row] = 0.0
                self._counts[row] = 0
            self._sums[row] += total
            self._counts[row] += count
            self._snapshot = None
            return int(self._counts[row])

    def _grow(self, rows: int) -> None:
        if rows <= self._sums.shape[0]:
            return
        capacity = max(rows, 2 * self._sums.shape[0], 16)
        sums = np.zeros((capacity, self._sums.shape[1]), dtype=np.float64)
        counts = np.zeros((capacity,), dtype=np.int64)
        n = len(self._order)
        sums[:n], counts[:n] = self._sums[:n], self._counts[:n]
        self._sums, self._counts = sums, counts

    def remove(self, label: str) -> None:
        """Forget a class; unknown labels are an error."""
        with self._lock:
            row = self._index.pop(label, None)
            if row is None:
                raise EdgemetaError(f"no class named {label!r}")
            last = len(self._order) - 1
            if row != last:
                moved = self._order[last]
                self._order[row] = moved
                self._index[moved] = row
                self._sums[row], self._counts[row] = self._sums[last], self._counts[last]
            self._order.pop()
            self._snapshot = None

    def prototypes(self) -> tuple[list[str], np.ndarray]:
        """Labels and their prototypes, float32 [C, D] (the mean of each class's shots)."""
        snap = self._current()
        return list(snap.labels), snap.prototypes.copy()

    def _current(self) -> _Snapshot:
        snap = self._snapshot  # one attribute read is atomic; the lock is for rebuilding
        if snap is not None:
            return snap
        with self._lock:
            if self._snapshot is None:
                n = len(self._order)
                protos = (self._sums[:n] / self._counts[:n, None]).astype(np.float32)
                # Distances in float64: ||q||^2 - 2 q.p + ||p||^2 cancels badly in float32 for
                # nearby points (scores off by ~2e-5 on a trained model); float32 prototypes
                # stay the single source of truth (bake puts exactly these in its graph).
                wide = protos.astype(np.float64)
                partial = np.empty((wide.shape[1] + 1, n))
                partial[:-1] = -2.0 * wide.T
                partial[-1] = np.einsum("cd,cd->c", wide, wide)
                self._snapshot = _Snapshot(tuple(self._order), protos, partial, partial[:-1], partial[-1], np.ones(n),
                                           self._counts[:n].copy())
            return self._snapshot

    # -- prediction --------------------------------------------------------------------
    def distances(self, images: Any) -> tuple[tuple[str, ...], np.ndarray]:
        """Labels and squared Euclidean distances float64 [N, C] from each image to each prototype."""
        snap, emb, partial = self._partial_distances(images)
        return snap.labels, np.maximum(partial + self._squared_norms(emb)[:, None], 0.0)

    def _partial_distances(self, images: Any) -> tuple[_Snapshot, np.ndarray, np.ndarray]:
        """The snapshot, embeddings float64 [N, D] and ``||p||^2 - 2 q.p`` float64 [N, C].

        One matrix product for all prototypes. Adding ``||q||^2`` gives the squared distance;
        ranking and softmax need only this part.
        """
        snap = self._current()
        if not snap.labels:
            raise EdgemetaError("the classifier has no classes enrolled")
        emb = self.embed(images).astype(np.float64)
        partial = np.dot(emb, snap.minus_2_t)
        partial += snap.sq_norms
        return snap, emb, partial

    def _squared_norms(self, emb: np.ndarray) -> np.ndarray:
        """||q||^2 per row of emb [N, D] (a matrix-vector product: cheaper per call than a reduction)."""
        return np.dot(emb * emb, self._ones_d)

    def predict(self, images: Any, top_k: int = 1) -> list[list[Prediction]]:
        """Per image, the ``top_k`` classes, best first: Prediction(label, score, distance)."""
        if not isinstance(top_k, int) or top_k < 1:
            raise EdgemetaError(f"top_k must be a positive integer, got {top_k!r}")
        if not self._cosine and self.query_views == 1:
            one = self._predict_single_bound(images, top_k)
            if one is not None:
                return [one]
        snap, emb, d = self._partial_distances(images)
        labels = snap.labels
        k = min(top_k, len(labels))
        if d.shape[0] == 1:
            return [self._predict_one(snap, d[0], float(np.dot(emb[0], emb[0])), k)]
        best = _top_k(d, k)
        near = np.take_along_axis(d, best, axis=1)  # [N, k], nearest first
        shift = near[:, :1]  # softmax of -distance, shifted by the row's minimum for stability
        totals = np.dot(np.exp(shift - d), snap.ones)
        scores = np.exp(shift - near) / totals[:, None]
        dists = np.maximum(near + self._squared_norms(emb)[:, None], 0.0)
        return [[_new_prediction(Prediction, item) for item in zip(map(labels.__getitem__, row), sc, di)]
                for row, sc, di in zip(best.tolist(), scores.tolist(), dists.tolist())]

    def _predict_single_bound(self, images: Any, top_k: int) -> list[Prediction] | None:
        """``predict`` for one uint8 grayscale image at the model's size, on the model's bound
        buffers: the embedding with a 1 appended times ``partial_matrix`` gives all partial
        distances in one product. None when the input or the model needs the general path."""
        snap = self._current()
        if not snap.labels:
            raise EdgemetaError("the classifier has no classes enrolled")
        bound = self.model.run_single_bound(images)
        if bound is None:
            return None
        query = bound.output_with_one_flat.astype(np.float64)  # [D + 1]
        d = np.dot(query, snap.partial_matrix)
        query_sq = float(np.dot(query, query)) - 1.0
        return self._predict_one(snap, d, query_sq, min(top_k, len(snap.labels)))

    @staticmethod
    def _predict_one(snap: _Snapshot, d: np.ndarray, query_sq: float, k: int) -> list[Prediction]:
        """``predict`` for one query: d float64 [C] (partial distances), query_sq its ||q||^2.

        The same arithmetic as the batched path in fewer numpy calls: at batch 1 each call's
        fixed cost (about a microsecond) is most of what the runtime adds to the network."""
        labels = snap.labels
        if k == 1 and len(labels) <= _FEW_CLASSES:
            row = d.tolist()
            nearest = min(row)
            total = sum([math.exp(nearest - x) for x in row])
            return [_new_prediction(Prediction, (labels[row.index(nearest)], 1.0 / total, max(nearest + query_sq, 0.0)))]
        order = [int(d.argmin())] if k == 1 else _top_k(d[None], k)[0].tolist()
        weights = np.exp(d[order[0]] - d)
        total = float(np.dot(weights, snap.ones))
        return [_new_prediction(Prediction, (labels[j], float(weights[j]) / total, max(float(d[j]) + query_sq, 0.0)))
                for j in order]

    def operating_point(self, reject: str | None = None, far: float | None = None,
                        threshold: float | None = None) -> OperatingPoint:
        """The rejection rule in force: the call's choice when it makes one, else this classifier's,
        else the model's ``balanced`` point."""
        if threshold is None and reject is None and far is None:
            threshold, reject, far = self.threshold, self.reject, self.far
        return operating_point(self.model.meta.rejection, self.model.meta.threshold, reject, far, threshold)

    def decide(self, images: Any, top_k: int = 1, *, reject: str | None = None, far: float | None = None,
               threshold: float | None = None) -> tuple[list[list[Prediction]], list[bool]]:
        """Per image its ``top_k`` predictions (as ``predict``) and whether the rejection rule accepts
        its nearest class (False: the image is unknown)."""
        op = self.operating_point(reject, far, threshold)
        preds = self.predict(images, top_k)
        return preds, self.accepts(preds, op)

    def accepts(self, predictions: list[list[Prediction]], op: OperatingPoint | None = None) -> list[bool]:
        """Whether ``op`` (default: the one in force) accepts each prediction list's first entry."""
        op = op or self.operating_point()
        snap = self._current()
        row = {lab: i for i, lab in enumerate(snap.labels)}
        # Classes enrolled or removed since predict: its snapshot is gone; a class no longer there
        # counts as a zero-length prototype (unknown under the calibrated rule), never as another class.
        index = np.array([row.get(p[0].label, -1) for p in predictions], dtype=np.int64)
        shots = np.where(index >= 0, snap.counts[index], 1)
        sq_norms = np.where(index >= 0, snap.sq_norms[index], 0.0)
        dist = [p[0].distance for p in predictions]
        return op.accepts(dist, shots, len(snap.labels), sq_norms).tolist()

    def classify(self, images: Any, threshold: float | None = None, *, reject: str | None = None,
                 far: float | None = None) -> list[str | None]:
        """Top-1 label per image, or None when the rejection rule calls it unknown."""
        preds, accepted = self.decide(images, 1, reject=reject, far=far, threshold=threshold)
        return [p[0].label if ok else None for p, ok in zip(preds, accepted)]

    # -- persistence -------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the store atomically: a crash or kill mid-save leaves the old file readable.

        NOT serialized against other writers: two processes that load, change and save one file
        at the same time keep only one's change; ``update`` serializes them. A read-only store is
        refused (``StoreError``); a replaced store keeps its file mode.
        """
        with self._lock:
            n = len(self._order)
            contents = StoreContents(list(self._order), self._sums[:n].copy(), self._counts[:n].copy(),
                                     self.model.fingerprint, self.model.meta.metric,
                                     self.model.meta.store_network_id or "")
        write_store(path, contents)

    @classmethod
    @contextmanager
    def update(cls, path: str | os.PathLike, model: EmbeddingModel,
               lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> Iterator[FewShotClassifier]:
        """``with FewShotClassifier.update("s.npz", model) as clf: clf.enroll(...)`` changes a store
        file in place, safely beside other processes and threads doing the same.

        Takes the store's write lock (waiting at most ``lock_timeout`` seconds, then
        ``StoreError``), loads the store (a new empty classifier when there is no file), yields
        it, saves it atomically when the block ends normally and nothing when it raises, then
        releases the lock. No other ``update``, ``edgemeta enroll`` or ``remove`` can interleave
        with it, so every completed one is kept. Others wait for the block: embed many images
        before it (``support_sum``) and only ``add_embeddings`` inside.
        """
        with store_lock(path, lock_timeout):
            clf = cls.load(path, model) if Path(path).exists() else cls(model)
            yield clf
            clf.save(path)

    @classmethod
    def load(cls, path: str | os.PathLike, model: EmbeddingModel, threshold: float | None = None,
             query_views: int = 1, *, reject: str | None = None, far: float | None = None) -> "FewShotClassifier":
        """Read a store made with ``model``, or with a file its metadata lists as computing the same
        embeddings (a store of another model is refused); ``query_views`` as in the constructor
        (a query-time choice: stores hold prototypes only)."""
        contents = read_store(path)
        check_store_fits(contents, model.meta, model.fingerprint, model.path.name, path)
        if contents.sums.shape[1] != model.embedding_dim:
            raise StoreError(f"store {path} holds {contents.sums.shape[1]}-d prototypes, the model makes {model.embedding_dim}-d")
        clf = cls(model, threshold=threshold, query_views=query_views, reject=reject, far=far)
        for label, total, count in zip(contents.labels, contents.sums, contents.counts):
            try:
                check_label(label)
            except EdgemetaError as e:
                raise StoreError(f"store {path} holds an invalid label ({e}); edgemeta remove drops it") from None
            clf.add_embeddings(label, total, int(count))
        return clf


def _top_k(d: np.ndarray, k: int) -> np.ndarray:
    """Column indices int [N, k] of the k smallest entries of each row of d [N, C], smallest first."""
    if k == 1:
        return d.argmin(axis=1)[:, None]
    if k < d.shape[1]:
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
        return np.take_along_axis(part, order, axis=1)
    return np.argsort(d, axis=1, kind="stable")
