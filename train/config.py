"""``TrainConfig``: everything a training run is made of (saved in its checkpoints and config.json),
and ``resolve``, which fills its 'auto' fields for this machine."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from edgemeta.runtime.errors import DataError


@dataclass
class TrainConfig:
    data: str
    out: str
    split: str | None = None
    rotations: bool = True
    way: int = 60
    shot: list[int] = field(default_factory=lambda: [1, 5])  # cycled step by step
    query: int = 5
    episodes: int = 40000
    episodes_per_step: int = 0  # per process (rank); 0: 8 on CUDA, 1 on the CPU
    device: str = "auto"
    precision: str = "auto"
    compile: bool = False
    seed: int = 0
    backbone: str = "conv4"
    backbone_kwargs: dict = field(default_factory=dict)
    size: int = 28
    channels: int = 0  # 1 or 3; 0: from --init's model, else 3 for a folder of colour images, else 1
    mean: list = field(default_factory=list)  # per channel; empty: from the training images (colour) or 0
    std: list = field(default_factory=list)  # per channel; empty: from the training images (colour) or 1
    aspect: str = ""  # PreprocessSpec.aspect; empty: letterbox for colour, stretch for grayscale
    polarity: str = ""  # PreprocessSpec.polarity; empty: none for colour, light_on_dark for grayscale (ink)
    metric: str = "sqeuclidean"
    lr: float = 1e-3
    lr_step: int = 0  # episodes between halvings; 0: episodes / 8
    lr_gamma: float = 0.5
    lr_schedule: str = "episodes"  # "episodes": x lr_gamma every lr_step episodes; "time": every eighth of time_limit
    augment: str = "full"
    val_every: int = 1000
    val_episodes: int = 600
    val_groups: int = 4
    test_way: int = 5
    test_shot: int = 1
    test_query: int = 15
    patience: int = 0  # validations without improvement before stopping; 0: never stop early
    log_every: int = 50
    channels_last: bool | None = None  # None: on CUDA only (no gain in full CPU training steps here)
    time_limit: float = 0.0  # seconds of training before a final validation and stop; 0: none
    target: float = 0.0  # stop once validation accuracy reaches this; 0: never
    init: str = ""  # warm start: weights of this checkpoint, run folder (best.pt) or exported .onnx; fresh optimizer and schedule


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Fill the 'auto' fields for this machine."""
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise DataError("--device cuda but no CUDA device is available")
    if cfg.precision == "auto":
        cfg.precision = "bf16" if cfg.device == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if cfg.episodes <= 0:
        raise DataError("episodes must be positive (0 only means 'the saved count' when resuming a run)")
    if cfg.episodes_per_step <= 0:
        cfg.episodes_per_step = 8 if cfg.device == "cuda" else 1
    if cfg.channels_last is None:
        cfg.channels_last = cfg.device == "cuda"
    if cfg.lr_step <= 0:
        cfg.lr_step = max(1, cfg.episodes // 8)
    return cfg
