"""The edgemeta metadata carried inside an ONNX model file.

Stored in the model's ``metadata_props`` under the key ``edgemeta`` as one JSON document::

    {
      "format_version": 1,
      "input_name": "images",  "output_name": "embeddings",
      "embedding_dim": 64,
      "metric": "sqeuclidean" | "cosine",
      "threshold": null | float,        # squared distance above which a query is unknown
      "support_shift": 0..3,            # enrolled images are embedded as the mean over their
                                        # shifts by up to this many pixels (0: as they are)
      "preprocess": {PreprocessSpec.to_dict()},
      "training": {...},                # data, split, episodes, backbone, ... (free form)
      "accuracy": {...},                # measured figures, free form
      "equivalent_fingerprints": [...]  # optional: sha256 of earlier files whose network computes
                                        # the same embeddings; their prototype stores load here
    }
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from .errors import ModelError
from .preprocess import PreprocessSpec, check_support_shift

METADATA_KEY = "edgemeta"
FORMAT_VERSION = 1
METRICS = ("sqeuclidean", "cosine")
MAX_METADATA_BYTES = 1_000_000


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
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
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
    def from_dict(cls, d: dict[str, Any]) -> "ModelMetadata":
        version = d.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ModelError("edgemeta metadata has no integer format_version")
        if version > FORMAT_VERSION:
            raise ModelError(f"model metadata format {version} is newer than this edgemeta supports ({FORMAT_VERSION}); upgrade edgemeta")
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
            isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v) for v in value):
        raise ValueError("equivalent_fingerprints must be a list of sha256 hex digests")
    return tuple(value)
