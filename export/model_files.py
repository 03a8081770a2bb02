"""Rewriting a model file's metadata in place, leaving its network untouched.

The file's fingerprint (sha256) changes with its metadata, so the old one goes into
``equivalent_fingerprints``: prototype stores made with the old file keep loading.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgemeta.runtime.errors import ExportError
from edgemeta.runtime.metadata import METADATA_KEY, ModelMetadata


def rewrite_metadata(path: str | Path, update: Callable[[ModelMetadata], ModelMetadata]) -> str:
    """Replace the edgemeta metadata of the model file ``path`` with ``update(old metadata)``,
    atomically, after checking through the runtime that the new file computes bit-identical
    embeddings; returns the new file's sha256. Nothing is written when the metadata is unchanged."""
    import onnx

    from edgemeta.runtime.files import atomic_write
    from edgemeta.runtime.model import EmbeddingModel

    from .onnx_export import set_metadata
    from .trim import _with_equivalent_fingerprint

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"model not found: {path}")
    data = path.read_bytes()
    old_fingerprint = hashlib.sha256(data).hexdigest()
    proto = onnx.load_from_string(data)
    text = next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None)
    if text is None:
        raise ExportError(f"{path} has no edgemeta metadata to rewrite")
    old = ModelMetadata.from_json(text)
    new = update(old)
    if new.to_json() == old.to_json():
        return old_fingerprint
    set_metadata(proto, new)
    _with_equivalent_fingerprint(proto, old_fingerprint)
    blob = proto.SerializeToString()
    before = EmbeddingModel(path)
    spec = before.meta.preprocess
    probe = np.random.default_rng(0).integers(0, 256, (16, *spec.size, spec.channels), dtype=np.uint8)
    expected = before.embed_prepared(probe)

    def check(tmp: Path) -> None:
        if not np.array_equal(EmbeddingModel(tmp).embed_prepared(probe), expected):
            raise ExportError(f"rewriting the metadata of {path} changed its embeddings; file left as it was")

    atomic_write(path, blob, check)
    return hashlib.sha256(blob).hexdigest()
