"""Training's device input path and the runtime's normalize(prepare_uint8(...)) agree exactly."""

from __future__ import annotations

import numpy as np
from conftest import needs_torch

from edgemeta.lab.datasets import load_source
from edgemeta.runtime.preprocess import PreprocessSpec, normalize, prepare_uint8


@needs_torch
def test_same_tensor_both_sides(tmp_path):
    import torch
    from PIL import Image

    from edgemeta.train.loop import InputPipe
    from edgemeta.train.sampler import to_device_images

    rng = np.random.default_rng(0)
    (tmp_path / "a").mkdir()
    paths = []
    for i in range(5):
        arr = np.full((40, 33), 230, dtype=np.uint8)
        arr[rng.integers(0, 30) :, rng.integers(0, 20)] = rng.integers(0, 60)
        Image.fromarray(arr).save(tmp_path / "a" / f"{i}.png")
        paths.append(tmp_path / "a" / f"{i}.png")
    for spec in (PreprocessSpec(size=(28, 28)), PreprocessSpec(size=(20, 20), mean=(0.1,), std=(0.3,))):
        data = load_source(tmp_path, spec)
        pipe = InputPipe(spec, torch.device("cpu"), "full", channels_last=True)
        trained = pipe(to_device_images(data.images, torch.device("cpu"))).contiguous().numpy()
        runtime = normalize(prepare_uint8([str(p) for p in paths], spec), spec)
        assert trained.dtype == runtime.dtype == np.float32
        np.testing.assert_array_equal(trained, runtime)
