"""Sampler layout, loss functions, augmentation, backbones and their ONNX export."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import needs_torch

pytestmark = needs_torch


def _ragged_data():
    counts = [7, 9, 12, 7, 8, 30]
    targets = np.concatenate([np.full(c, k) for k, c in enumerate(counts)]).astype(np.int64)
    images = np.zeros((len(targets), 4, 4, 1), dtype=np.uint8)
    images[:, 0, 0, 0] = np.arange(len(targets))  # row number readable from the image
    return images, targets


def test_sampler_layout():
    from edgemeta.train.sampler import TrainingEpisodeSampler

    images, targets = _ragged_data()
    s = TrainingEpisodeSampler(images, targets, way=4, shot=2, query=5, episodes_per_step=3, seed=1)
    for _ in range(20):
        state = s.state()
        idx = s.sample_indices()
        s.set_state(state)
        assert idx.shape == (3, 4, 7)
        x = s.sample()
        assert x.shape == (3 * 4 * 7, 1, 4, 4) and x.dtype.is_floating_point is False
        rows = x[:, 0, 0, 0].numpy().reshape(3, 4, 7)
        np.testing.assert_array_equal(rows, idx.numpy())
        cls = targets[idx.numpy()]
        for e in range(3):
            assert (cls[e] == cls[e, :, :1]).all()  # one class per row
            assert len(set(cls[e, :, 0])) == 4  # no class repeated within an episode
            for n in range(4):
                assert len(set(idx[e, n].tolist())) == 7  # support and query disjoint
    with pytest.raises(ValueError, match="shot \\+ query"):
        TrainingEpisodeSampler(images, targets, way=6, shot=5, query=5)


def test_loss_functions():
    import torch

    from edgemeta.train.loss import distances, episode_logits, prototypes, prototypical_loss

    q, p = torch.randn(2, 6, 5), torch.randn(2, 3, 5)
    np.testing.assert_allclose(distances(q, p), torch.cdist(q, p) ** 2, rtol=1e-4, atol=1e-4)
    cos = distances(q, p, "cosine")
    assert cos.shape == (2, 6, 3) and (cos >= -1e-6).all() and (cos <= 2 + 1e-6).all()
    emb = torch.randn(2, 3, 4, 5)
    assert torch.allclose(prototypes(emb[:, :, :1]), emb[:, :, 0])
    logits, labels = episode_logits(emb, shot=1)
    assert logits.shape == (2, 9, 3) and labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    # Queries equal to their prototypes are classified right.
    same = 10 * emb[:, :, :1].expand(2, 3, 4, 5)
    loss, acc = prototypical_loss(*episode_logits(same, shot=1))
    assert acc.item() == 1.0 and loss.item() < 1e-3


def test_augment_keeps_shape_and_background():
    import torch

    from edgemeta.train.augment import PRESETS, augment

    g = torch.Generator().manual_seed(0)
    x = torch.zeros(4, 1, 16, 16)
    x[:, :, 6:10, 7] = 1.0
    for name in ("affine", "stroke", "full"):
        y = augment(x, PRESETS[name], g)
        assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0 + 1e-6
    assert augment(x, None, g) is x
    assert augment(x, PRESETS["stroke"], g).sum() >= x.sum()


@pytest.mark.parametrize("name,channels,size", [("conv4", 1, 28), ("resnet12", 1, 28), ("mobilenet_v3_small", 3, 64)])
def test_backbone_onnx_export(tmp_path, name, channels, size):
    import onnxruntime as ort
    import torch

    from edgemeta.train.backbones import build_backbone

    model = build_backbone(name, channels).eval()
    x = torch.rand(3, channels, size, size)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(
        model,
        (x[:1],),
        str(path),
        input_names=["x"],
        output_names=["emb"],
        opset_version=17,
        dynamic_axes={"x": {0: "batch"}, "emb": {0: "batch"}},
        dynamo=False,
    )
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
