"""The documented errors of edgemeta, of every layer (runtime, lab, train, export): the one module
that defines them. Anything a user can cause raises one of these; the CLI turns them into a one-line
``Error: ...`` and a non-zero exit."""

from __future__ import annotations

import os
from pathlib import Path


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


class ExportError(EdgemetaError):
    """A checkpoint cannot be exported, or the exported model fails verification."""


class CheckpointError(DataError):
    """A checkpoint file is missing, corrupted, or not an edgemeta checkpoint."""


class RunExistsError(DataError):
    """``--out`` already holds a run and neither ``--resume`` nor ``--overwrite`` was given."""


class Interrupted(Exception):
    """Training stopped by a signal after saving ``path`` at ``episode``; ``exit_code`` is the
    shell's convention (128 + signal number: 130 for SIGINT, 143 for SIGTERM). Not an error:
    ``edgemeta train`` prints the message and exits with ``exit_code``."""

    def __init__(self, signum: int, path: str | os.PathLike, episode: int) -> None:
        import signal

        self.signum, self.path, self.episode = signum, Path(path), episode
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted by {name} at episode {episode}; saved {self.path}; continue with: "
            f"edgemeta train --out {self.path.parent} --resume"
        )
