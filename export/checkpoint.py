"""Reading an ``edgemeta-checkpoint`` (written by ``edgemeta train``) and rebuilding its network.

Reading is ``edgemeta.train.checkpoint`` (``torch.load(weights_only=True)``: a checkpoint never runs
code when it is read); this adds what export needs on top: a run folder falls back to ``last.pt``,
and the config must say how to feed the network.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgemeta.runtime.errors import EdgemetaError, ExportError
from edgemeta.runtime.preprocess import PreprocessSpec

REQUIRED_CONFIG = ("backbone", "in_channels", "preprocess", "metric")


@dataclass
class Checkpoint:
    """What export needs from a checkpoint: the run's config, the weights and the validation summary."""

    path: Path
    config: dict[str, Any]
    state_dict: dict[str, Any]
    episode: int | None
    best_val: dict[str, Any] | None

    @property
    def preprocess(self) -> PreprocessSpec:
        return PreprocessSpec.from_dict(self.config["preprocess"])

    @property
    def network_id(self) -> str:
        """sha256 of the weights (names, shapes, dtypes, values in name order): the same for every
        file exported from this checkpoint, fp32 or int8, so their metadata can name one network."""
        import hashlib

        h = hashlib.sha256()
        for name in sorted(self.state_dict):
            value = self.state_dict[name]
            array = value.detach().cpu().contiguous().numpy() if hasattr(value, "detach") else value
            h.update(f"{name}:{getattr(array, 'dtype', '')}:{getattr(array, 'shape', '')};".encode())
            h.update(array.tobytes() if hasattr(array, "tobytes") else repr(array).encode())
        return h.hexdigest()


def resolve_checkpoint(path: str | Path) -> Path:
    """A run folder -> its ``best.pt`` (else ``last.pt``); a file -> itself."""
    p = Path(path).expanduser()
    if p.is_dir():
        for name in ("best.pt", "last.pt"):
            if (p / name).is_file():
                return p / name
        raise ExportError(f"no best.pt or last.pt in run folder {p}")
    if not p.is_file():
        raise ExportError(f"checkpoint not found: {p}")
    return p


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read (through ``edgemeta.train.checkpoint``) and validate a checkpoint file or run folder."""
    from edgemeta.train.checkpoint import read_checkpoint

    file = resolve_checkpoint(path)
    with warnings.catch_warnings():  # torch warns about foreign pickles; the error says it all
        warnings.simplefilter("ignore")
        raw = read_checkpoint(file)
    return _validate(raw, file)


def _validate(raw: Any, file: Path) -> Checkpoint:
    config, state = raw.get("config"), raw.get("model")
    if not isinstance(config, dict) or any(k not in config for k in REQUIRED_CONFIG):
        raise ExportError(f"{file}: checkpoint config lacks one of {REQUIRED_CONFIG}")
    if not isinstance(state, dict) or not state:
        raise ExportError(f"{file}: checkpoint holds no model weights")
    best = raw.get("best_val")
    ckpt = Checkpoint(file, config, state, raw.get("episode"), best if isinstance(best, dict) else None)
    try:
        _ = ckpt.preprocess  # validates the recorded preprocessing
    except EdgemetaError as e:
        raise ExportError(f"{file}: {e}") from None
    return ckpt


def build_model(ckpt: Checkpoint):
    """The checkpoint's backbone with its weights, in eval mode (float32, CPU)."""
    from edgemeta.train.checkpoint import build_model_from_checkpoint

    return build_model_from_checkpoint({"config": ckpt.config, "model": ckpt.state_dict}).float().eval()
