"""The edgemeta metadata carried inside an ONNX model file.

Stored in the model's ``metadata_props`` under the key ``edgemeta`` as one JSON document::

    {
      "format_version": 1,
      "input_name": "images",  "output_name": "embeddings",
      "embedding_dim": 64,
      "metric": "sqeuclidean" | "cosine",
      "threshold": null | float,        # squared distance above which a query is unknown (the rule
                                        # of files without a "rejection" section; kept for old readers)
      "support_shift": 0..3,            # enrolled images are embedded as the mean over their
                                        # shifts by up to this many pixels (0: as they are)
      "preprocess": {PreprocessSpec.to_dict()},
      "training": {...},                # data, split, episodes, backbone, ... (free form)
      "accuracy": {...},                # measured figures, free form
      "equivalent_fingerprints": [...], # optional: sha256 of earlier files whose network computes
                                        # the same embeddings; their prototype stores load here
      "network": {...},                 # optional: {"id": hex, "reference": bool, "agreement": {...}}:
                                        # files of one network share stores (see store_network_id)
      "domain": {...},                  # optional: what the training images looked like (domain.py)
      "rejection": {...}                # optional: the calibrated unknown-rejection rule (rejection.py);
                                        # without it the rule falls back on "threshold"
    }
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .domain import check_domain
from .errors import ModelError
from .preprocess import PreprocessSpec, check_support_shift
from .rejection import RejectionRule

METADATA_KEY = "edgemeta"
# Written by ``edgemeta bake`` (export/bake.py) beside METADATA_KEY: they mark a classifier graph
# (prototypes inside, scores out), which must not be taken for the embedding model it was made from.
CLASSIFIER_KEY = "edgemeta.classifier"
LABELS_KEY = "labels"
# What a baked classifier takes (its classifier entry's "input_kind"; files without one: normalized):
# the model's normalized float32 [N, C, H, W], or decoded RGBA pixels uint8 [N, H, W, 4] of any size.
BAKED_INPUTS = ("normalized", "pixels")
BAKED_INPUT_TENSORS = {"normalized": "float32 [N, C, H, W], normalized", "pixels": "uint8 [N, H, W, 4] RGBA, any size"}
FORMAT_VERSION = 1
METRICS = ("sqeuclidean", "cosine")
MAX_METADATA_BYTES = 1_000_000
# A file of a network that is not its reference (fp32) file shares prototype stores with it when export
# measured at least this top-1 nearest-prototype agreement with the reference on validation episodes.
MIN_STORE_AGREEMENT = 0.995


@dataclass(frozen=True)
class ModelMetadata:
    preprocess: PreprocessSpec
    embedding_dim: int
    metric: str = "sqeuclidean"
    threshold: float | None = None
    support_shift: int = 0
    input_name: str = "images"
    output_name: str = "embeddings"
    training: dict[str, Any] = field(default_factory=dict)
    accuracy: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    equivalent_fingerprints: tuple[str, ...] = ()
    network: dict[str, Any] = field(default_factory=dict)
    domain: dict[str, Any] = field(default_factory=dict)
    rejection: RejectionRule | None = None

    @property
    def store_network_id(self) -> str | None:
        """The network id this file's prototype stores record and accept: set for the network's
        reference file and for files (int8) whose measured agreement with it reaches
        ``MIN_STORE_AGREEMENT``; None otherwise (stores then tie to the file's fingerprint only)."""
        net = self.network
        if not net.get("id"):
            return None
        if net.get("reference") or self.store_agreement >= MIN_STORE_AGREEMENT:
            return str(net["id"])
        return None

    @property
    def store_agreement(self) -> float:
        """The measured top-1 agreement with the network's reference file (1.0 for the reference)."""
        if self.network.get("reference"):
            return 1.0
        return float((self.network.get("agreement") or {}).get("top1", 0.0))

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format_version": self.format_version,
            "input_name": self.input_name,
            "output_name": self.output_name,
            "embedding_dim": self.embedding_dim,
            "metric": self.metric,
            "threshold": self.threshold,
            "support_shift": self.support_shift,
            "preprocess": self.preprocess.to_dict(),
            "training": self.training,
            "accuracy": self.accuracy,
        }
        if self.equivalent_fingerprints:
            d["equivalent_fingerprints"] = list(self.equivalent_fingerprints)
        if self.network:
            d["network"] = self.network
        if self.domain:
            d["domain"] = self.domain
        if self.rejection is not None:
            d["rejection"] = self.rejection.to_dict()
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelMetadata:
        if len(text) > MAX_METADATA_BYTES:
            raise ModelError("edgemeta metadata is too large")
        try:
            d = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise ModelError(f"edgemeta metadata is not valid JSON: {e}") from None
        if not isinstance(d, dict):
            raise ModelError("edgemeta metadata must be a JSON object")
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelMetadata:
        version = d.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ModelError("edgemeta metadata has no integer format_version")
        if version > FORMAT_VERSION:
            raise ModelError(
                f"model metadata format {version} is newer than this edgemeta supports ({FORMAT_VERSION}); upgrade edgemeta"
            )
        if not isinstance(d.get("preprocess"), dict):
            raise ModelError("edgemeta metadata has no preprocess section")
        try:
            dim = int(d["embedding_dim"])
            threshold = d.get("threshold")
            threshold = None if threshold is None else float(threshold)
            meta = cls(
                preprocess=PreprocessSpec.from_dict(d["preprocess"]),
                embedding_dim=dim,
                metric=str(d.get("metric", "sqeuclidean")),
                threshold=threshold,
                support_shift=check_support_shift(d.get("support_shift", 0)),
                input_name=str(d.get("input_name", "images")),
                output_name=str(d.get("output_name", "embeddings")),
                training=dict(d.get("training") or {}),
                accuracy=dict(d.get("accuracy") or {}),
                format_version=version,
                equivalent_fingerprints=_fingerprints(d.get("equivalent_fingerprints", [])),
                network=_network(d.get("network") or {}),
                domain=check_domain(d.get("domain") or {}),
                rejection=None if d.get("rejection") is None else RejectionRule.from_dict(d["rejection"]),
            )
        except (KeyError, TypeError, ValueError, OverflowError) as e:
            raise ModelError(f"invalid edgemeta metadata: {e!r}") from None
        if dim < 1:
            raise ModelError(f"embedding_dim must be positive, got {dim}")
        if meta.metric not in METRICS:
            raise ModelError(f"unknown metric {meta.metric!r}; one of {METRICS}")
        if threshold is not None and not (math.isfinite(threshold) and threshold > 0):
            raise ModelError("threshold must be a positive finite number")
        return meta


def _fingerprints(value: Any) -> tuple[str, ...]:
    """A list of sha256 hex digests -> tuple; ValueError for anything else."""
    if not isinstance(value, list) or not all(
        isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v) for v in value
    ):
        raise ValueError("equivalent_fingerprints must be a list of sha256 hex digests")
    return tuple(value)


def is_baked_classifier(props: dict[str, str]) -> bool:
    """Whether ONNX ``metadata_props`` are those of a file made by ``edgemeta bake``."""
    return CLASSIFIER_KEY in props or (METADATA_KEY in props and LABELS_KEY in props)


def classifier_summary(props: dict[str, str]) -> dict[str, Any]:
    """What a baked classifier's metadata says: {"classes", "input" (its name: dtype and layout), "shots":
    {label: count}, "model_fingerprint", "embedding_dim", "metric", "threshold"}; ModelError when it is damaged."""
    try:
        if len(props.get(CLASSIFIER_KEY, "")) > MAX_METADATA_BYTES:
            raise ValueError("too large")
        info = json.loads(props[CLASSIFIER_KEY]) if CLASSIFIER_KEY in props else {}
        labels = info.get("labels", json.loads(props.get(LABELS_KEY, "[]")))
        shots = info.get("shots", [None] * len(labels))
        if not (isinstance(labels, list) and isinstance(shots, list) and len(shots) == len(labels)):
            raise ValueError("labels and shots do not match")
        meta = ModelMetadata.from_json(props[METADATA_KEY]) if METADATA_KEY in props else None
        kind = str(info.get("input_kind", "normalized"))
        taken = f"{info.get('input', meta.input_name if meta else 'images')}: {BAKED_INPUT_TENSORS.get(kind, kind)}"
    except (ValueError, TypeError, AttributeError, RecursionError) as e:
        raise ModelError(f"baked classifier metadata is damaged: {e}") from None
    return {
        "classes": len(labels),
        "input": taken,
        "shots": {str(lab): n for lab, n in zip(labels, shots)},
        "model_fingerprint": info.get("model_fingerprint"),
        "embedding_dim": meta and meta.embedding_dim,
        "metric": meta and meta.metric,
        "threshold": meta and meta.threshold,
    }


def _network(value: Any) -> dict[str, Any]:
    """The ``network`` section: an object whose id (when present) is a string and whose agreement a number."""
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("id", ""), str)
        or not isinstance(value.get("agreement") or {}, dict)
    ):
        raise ValueError("network must be an object with a string id and an agreement object")
    top1 = float((value.get("agreement") or {}).get("top1", 0.0))
    if not 0.0 <= top1 <= 1.0:
        raise ValueError("network agreement top1 must be a fraction")
    return value
