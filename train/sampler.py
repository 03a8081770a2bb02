"""Episodic sampler with the whole data set resident on the device as uint8.

One call draws E episodes at once with a handful of tensor ops (random keys + argsort),
no per-image Python work: the classes of each episode, then K + Q distinct examples of
each class. Classes may hold different numbers of examples. Under DDP (``shard``) every
rank draws the indices of all ranks' episodes from the same stream and keeps its slice.
"""

from __future__ import annotations

import numpy as np
import torch


class TrainingEpisodeSampler:
    """Draws batches of N-way (K + Q)-example episodes.

    images: uint8 [M, H, W, C] (numpy); targets: int64 [M]. Classes with fewer than
    ``shot + query`` examples are left out. ``sample()`` returns uint8 [E * N * (K + Q), C, H, W],
    episode-major, then class, then K support followed by Q query examples.
    """

    def __init__(
        self,
        images: np.ndarray,
        targets: np.ndarray,
        way: int,
        shot: int,
        query: int,
        episodes_per_step: int = 1,
        device: str | torch.device = "cpu",
        seed: int = 0,
        data: torch.Tensor | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        self.way, self.shot, self.query, self.episodes = way, shot, query, episodes_per_step
        # (rank, world): draw the episodes of all ranks from the shared stream, keep this rank's.
        self.rank, self.world = shard
        self.device = torch.device(device)
        # Shared between samplers of one data set (training shots, validation) to store it once.
        self.data = data if data is not None else to_device_images(images, self.device)
        order = np.argsort(targets, kind="stable")
        counts = np.bincount(targets, minlength=int(targets.max()) + 1 if len(targets) else 0)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        eligible = np.flatnonzero(counts >= shot + query)
        if len(eligible) < way:
            raise ValueError(
                f"{way}-way episodes need {way} classes with at least {shot + query} examples "
                f"(shot + query); the data has {len(eligible)}"
            )
        self.order = torch.as_tensor(order, device=self.device)
        self.offsets = torch.as_tensor(offsets[eligible], device=self.device)
        self.counts = torch.as_tensor(counts[eligible], device=self.device)
        self.max_count = int(counts[eligible].max())
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    @property
    def num_classes(self) -> int:
        return int(self.counts.numel())

    def sample_indices(self) -> torch.Tensor:
        """int64 [E, N, K + Q]: row numbers into the data for one batch of episodes."""
        e, n, kq = self.episodes * self.world, self.way, self.shot + self.query
        mine = slice(self.rank * self.episodes, (self.rank + 1) * self.episodes)
        class_keys = torch.rand(e, self.num_classes, generator=self.generator, device=self.device)
        classes = class_keys.argsort(dim=1)[mine, :n]
        keys = torch.rand(e, n, self.max_count, generator=self.generator, device=self.device)[mine]
        slots = torch.arange(self.max_count, device=self.device)
        keys = keys.masked_fill(slots >= self.counts[classes].unsqueeze(-1), 2.0)
        picks = keys.argsort(dim=-1)[..., :kq]
        return self.order[self.offsets[classes].unsqueeze(-1) + picks]

    def sample(self) -> torch.Tensor:
        """uint8 [E * N * (K + Q), C, H, W] for one batch of episodes."""
        return self.data[self.sample_indices().reshape(-1)]

    def state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)


def to_device_images(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """uint8 [M, H, W, C] numpy -> uint8 [M, C, H, W] on ``device``."""
    return torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2))).to(device)
