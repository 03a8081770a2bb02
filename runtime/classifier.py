"""``FewShotClassifier``: class prototypes (mean embeddings) and nearest-prototype prediction.

State is per-class running sums and counts, so more shots can be added at any time. All
mutation happens under one lock; predictions read an immutable snapshot of the prototypes,
so many threads may enroll and predict at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from . import fastpath
from .errors import EdgemetaError, StoreError
from .interchange import check_store_fits
from .model import EmbeddingModel
from .nearest import for_metric
from .preprocess import check_query_views, check_support_shift, query_offsets, support_offsets
from .prototype_index import PrototypeIndex
from .rejection import OperatingPoint, operating_point
from .store import StoreContents, check_label, check_labels, read_store, write_store
from .store_lock import DEFAULT_LOCK_TIMEOUT, store_lock


class Prediction(NamedTuple):
    """One candidate class for a query: softmax ``score`` over negative squared distances."""

    label: str
    score: float
    distance: float


class FewShotClassifier:
    """Learns classes from a few examples each; classifies by nearest prototype."""

    def __init__(
        self,
        model: EmbeddingModel,
        threshold: float | None = None,
        support_shift: int | None = None,
        query_views: int = 1,
        *,
        reject: str | None = None,
        far: float | None = None,
    ) -> None:
        """``reject`` ("strict", "balanced" (default), "off") or a target false-accept rate ``far``
        picks the rejection operating point (runtime/rejection.py); ``threshold``, a squared
        distance, overrides both for every class alike."""
        self.model = model
        self.threshold, self.reject, self.far = threshold, reject, far
        self.operating_point()  # a bad choice fails here, not at the first classify
        self.support_shift = check_support_shift(model.meta.support_shift if support_shift is None else support_shift)
        # Test-time augmentation of queries: 3 views cost 3 network evaluations per query.
        self.query_views = check_query_views(query_views)
        self._query_views = query_offsets(self.query_views)
        self._support_views = support_offsets(self.support_shift)
        self._lock = threading.RLock()
        dim = model.embedding_dim
        self._index: dict[str, int] = {}
        self._order: list[str] = []
        self._sums = np.zeros((0, dim), dtype=np.float64)
        self._counts = np.zeros((0,), dtype=np.int64)
        self._snapshot: PrototypeIndex | None = None

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
        ``query_views`` shifted views (``EmbeddingModel.embed``), unit length for cosine."""
        return for_metric(self.model.embed(images, self._query_views), self.model.meta.metric)

    def embed_support(self, images: Any) -> np.ndarray:
        """float32 [N, D] embeddings of images to enroll: the mean over their ``support_shift``
        views (``EmbeddingModel.embed``), unit length for cosine."""
        return for_metric(self.model.embed(images, self._support_views), self.model.meta.metric)

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

    def _current(self) -> PrototypeIndex:
        snap = self._snapshot  # one attribute read is atomic; the lock is for rebuilding
        if snap is not None:
            return snap
        with self._lock:
            if self._snapshot is None:
                n = len(self._order)
                self._snapshot = PrototypeIndex.build(tuple(self._order), self._sums[:n], self._counts[:n].copy())
            return self._snapshot

    # -- prediction --------------------------------------------------------------------
    def distances(self, images: Any) -> tuple[tuple[str, ...], np.ndarray]:
        """Labels and squared Euclidean distances float64 [N, C] from each image to each prototype."""
        snap = self._enrolled()
        return snap.labels, snap.distances(self.embed(images))

    def _enrolled(self) -> PrototypeIndex:
        snap = self._current()
        if not snap.labels:
            raise EdgemetaError("the classifier has no classes enrolled")
        return snap

    def predict(self, images: Any, top_k: int = 1) -> list[list[Prediction]]:
        """Per image, the ``top_k`` classes, best first: Prediction(label, score, distance)."""
        return self._predict(images, top_k)[2]

    def _predict(self, images: Any, top_k: int) -> tuple[PrototypeIndex, Any, list[list[Prediction]]]:
        """The snapshot answering, each image's nearest class (N ints, rows of it) and ``predict``."""
        if not isinstance(top_k, int) or top_k < 1:
            raise EdgemetaError(f"top_k must be a positive integer, got {top_k!r}")
        snap = self._enrolled()
        emb = self.embed(images)
        labels = snap.labels
        if fastpath.applies(snap, emb):
            near = fastpath.nearest_one(snap, emb, top_k)
            return snap, [near[0][0]], [[Prediction(labels[j], score, dist) for j, score, dist in near]]
        found = snap.search(emb, top_k)
        names = [labels[j] for j in found.classes.ravel().tolist()]
        flat = list(map(Prediction, names, found.score.ravel().tolist(), found.distance.ravel().tolist()))
        k = found.classes.shape[1]  # one flat list sliced per row: half the cost of a nested comprehension
        return snap, found.classes[:, 0], [flat[i : i + k] for i in range(0, len(flat), k)]

    def operating_point(
        self, reject: str | None = None, far: float | None = None, threshold: float | None = None
    ) -> OperatingPoint:
        """The rejection rule in force: the call's choice when it makes one, else this classifier's,
        else the model's ``balanced`` point."""
        if threshold is None and reject is None and far is None:
            threshold, reject, far = self.threshold, self.reject, self.far
        return operating_point(self.model.meta.rejection, self.model.meta.threshold, reject, far, threshold)

    def decide(
        self,
        images: Any,
        top_k: int = 1,
        *,
        reject: str | None = None,
        far: float | None = None,
        threshold: float | None = None,
    ) -> tuple[list[list[Prediction]], list[bool]]:
        """Per image its ``top_k`` predictions (as ``predict``) and whether the rejection rule accepts
        its nearest class (False: the image is unknown), both from one snapshot of the classes."""
        op = self.operating_point(reject, far, threshold)
        snap, nearest, preds = self._predict(images, top_k)
        nearest = np.asarray(nearest)
        dist = [p[0].distance for p in preds]
        return preds, op.accepts(dist, snap.counts[nearest], len(snap.labels), snap.sq_norms[nearest]).tolist()

    def classify(
        self, images: Any, threshold: float | None = None, *, reject: str | None = None, far: float | None = None
    ) -> list[str | None]:
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
            contents = StoreContents(
                list(self._order),
                self._sums[:n].copy(),
                self._counts[:n].copy(),
                self.model.fingerprint,
                self.model.meta.metric,
                self.model.meta.store_network_id or "",
            )
        write_store(path, contents)

    @classmethod
    @contextmanager
    def update(
        cls, path: str | os.PathLike, model: EmbeddingModel, lock_timeout: float = DEFAULT_LOCK_TIMEOUT
    ) -> Iterator[FewShotClassifier]:
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
    def load(
        cls,
        path: str | os.PathLike,
        model: EmbeddingModel,
        threshold: float | None = None,
        query_views: int = 1,
        *,
        reject: str | None = None,
        far: float | None = None,
    ) -> FewShotClassifier:
        """Read a store made with ``model``, or with a file its metadata lists as computing the same
        embeddings (a store of another model is refused); ``query_views`` as in the constructor
        (a query-time choice: stores hold prototypes only)."""
        contents = read_store(path)
        check_store_fits(contents, model.meta, model.fingerprint, model.path.name, path)
        if contents.sums.shape[1] != model.embedding_dim:
            raise StoreError(
                f"store {path} holds {contents.sums.shape[1]}-d prototypes, the model makes {model.embedding_dim}-d"
            )
        clf = cls(model, threshold=threshold, query_views=query_views, reject=reject, far=far)
        try:
            check_labels(contents.labels)
        except EdgemetaError as e:
            raise StoreError(f"store {path} holds an invalid label ({e}); edgemeta remove drops it") from None
        with clf._lock:  # all classes at once (read_store has checked the labels are distinct), no copies
            clf._order = list(contents.labels)
            clf._index = dict(zip(clf._order, range(len(clf._order))))
            clf._sums = np.require(contents.sums, np.float64, ["C", "W"])
            clf._counts = np.require(contents.counts, np.int64, ["C", "W"])
        return clf
