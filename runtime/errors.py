"""The documented errors of edgemeta. Anything a user can cause raises one of these;
the CLI turns them into a one-line ``Error: ...`` and a non-zero exit."""

from __future__ import annotations


class EdgemetaError(Exception):
    """Base class of every user-facing error."""


class ModelError(EdgemetaError):
    """A model file is missing, not ONNX, lacks edgemeta metadata, or has the wrong shape."""


class ImageError(EdgemetaError):
    """An image cannot be read, decoded or converted."""


class StoreError(EdgemetaError):
    """A prototype store is missing, corrupted, too new, or made with another model."""


class DataError(EdgemetaError):
    """A data source (Omniglot, MNIST, image folder) cannot be read or does not fit the request."""
