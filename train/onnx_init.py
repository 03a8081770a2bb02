"""Warm start from an exported ONNX file (``--init model.onnx``): fine-tune a shipped model
without its checkpoint.

Export folds each BatchNorm into the convolution before it, so the file holds ``conv(x) + b``
where training needs ``BN(conv(x))``. The BatchNorm is re-inflated so that both modes start out
as the file's function: with running statistics ``m, v`` of the convolution's output on training
images, ``gamma = sqrt(v + eps)`` and ``beta = m + b`` make eval mode exactly ``conv(x) + b``,
and train mode (batch statistics, close to ``m, v`` on training batches) nearly so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgemeta.runtime.errors import CheckpointError, EdgemetaError
from edgemeta.runtime.preprocess import PreprocessSpec

CALIBRATION_IMAGES = 1024
AGREEMENT_TOLERANCE = 1e-3  # max |torch - onnxruntime| relative to the embeddings' scale


def is_onnx_file(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ".onnx" and Path(path).is_file()


def conv_bn_pairs(model: nn.Module) -> list[tuple[str, nn.Conv2d, nn.BatchNorm2d | None]]:
    """Every convolution in module order, with the BatchNorm that directly follows it in its
    ``nn.Sequential`` (or None: also a convolution outside any, such as a squeeze-excitation's)."""
    following: dict[int, nn.BatchNorm2d] = {}
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            children = list(module.children())
            for child, after in zip(children, children[1:]):
                if isinstance(child, nn.Conv2d) and isinstance(after, nn.BatchNorm2d):
                    following[id(child)] = after
    return [(name, m, following.get(id(m))) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def read_onnx(path: str | Path) -> tuple[dict[str, Any], list[tuple[np.ndarray, np.ndarray | None]]]:
    """The file's edgemeta metadata and, per Conv node in graph order, its (weight, bias) arrays."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError:
        raise CheckpointError(
            "--init from an .onnx file needs the onnx package: pip install 'edgemeta[export]'"
        ) from None
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # onnx raises DecodeError and friends: anything unreadable is one error
        raise CheckpointError(f"--init {path}: not a readable ONNX file ({type(e).__name__})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    if "edgemeta" not in meta:
        raise CheckpointError(f"--init {path}: not an edgemeta model (no edgemeta metadata)")
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    convs = []
    for node in proto.graph.node:
        if node.op_type == "Conv":
            w = weights.get(node.input[1])
            b = weights.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            if w is None:  # e.g. an int8 file: weights come through DequantizeLinear
                raise CheckpointError(
                    f"--init {path}: its convolution weights are not plain tensors "
                    "(an int8 file?); start from the fp32 file"
                )
            convs.append((w, b))
    return json.loads(meta["edgemeta"]), convs


def check_compatible(path: str | Path, meta: dict[str, Any], cfg: Any, spec: dict[str, Any]) -> None:
    """Refuse a file made for another backbone or another input encoding (``spec``: this run's
    preprocessing, ``PreprocessSpec.to_dict()``); the size may differ."""
    training, pre = meta.get("training") or {}, meta.get("preprocess") or {}
    try:  # fields added since the file was made (e.g. aspect) take their defaults, as the runtime reads them
        pre = PreprocessSpec.from_dict(pre).to_dict()
    except EdgemetaError:
        pass  # compared as written below: the mismatch names the field
    if training.get("backbone") != cfg.backbone:
        raise CheckpointError(
            f"--init {path}: its backbone is {training.get('backbone')!r}, this run's is {cfg.backbone!r}"
        )
    for key, value in spec.items():
        if key != "size" and pre.get(key) != value:
            raise CheckpointError(f"--init {path}: its preprocess {key} is {pre.get(key)!r}, this run's is {value!r}")


def load_folded(model: nn.Module, convs: list[tuple[np.ndarray, np.ndarray | None]], path: str | Path) -> None:
    """Copy the file's folded weights into ``model``; each BatchNorm becomes the identity plus
    the folded bias (running mean 0, variance 1, gamma sqrt(1 + eps))."""
    pairs = conv_bn_pairs(model)
    covered = {id(p) for _, conv, bn in pairs for m in (conv, bn) if m is not None for p in m.parameters()}
    uncovered = [n for n, p in model.named_parameters() if id(p) not in covered]
    if len(pairs) != len(convs) or uncovered:
        raise CheckpointError(
            f"--init {path} does not fit this network: {len(convs)} convolutions in the file, "
            f"{len(pairs)} in the network" + (f", and {uncovered[0]} has no counterpart" if uncovered else "")
        )
    with torch.no_grad():
        for (name, conv, bn), (w, b) in zip(pairs, convs):
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise CheckpointError(
                    f"--init {path} does not fit this network: {name}.weight is "
                    f"{tuple(conv.weight.shape)} here, {tuple(w.shape)} in the file"
                )
            conv.weight.copy_(torch.from_numpy(np.array(w)))
            bias = torch.zeros(w.shape[0]) if b is None else torch.from_numpy(np.array(b))
            if bn is None:
                if conv.bias is None and b is not None and np.any(b):
                    raise CheckpointError(f"--init {path} does not fit this network: {name} has no bias")
                if conv.bias is not None:
                    conv.bias.copy_(bias)
                continue
            if conv.bias is not None:
                conv.bias.zero_()
            bn.running_mean.zero_(), bn.running_var.fill_(1.0)
            bn.weight.fill_(float(np.sqrt(1.0 + bn.eps))), bn.bias.copy_(bias)


def calibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch: int = 256) -> None:
    """Give each BatchNorm the running statistics ``m, v`` of its input on ``images`` (float
    [N, C, H, W], model inputs) and ``gamma = sqrt(v + eps)``, ``beta = m + beta``: eval mode is
    unchanged, and train mode's batch statistics now start near ``m, v``."""
    bns = [bn for _, _, bn in conv_bn_pairs(model) if bn is not None]
    sums = {bn: [0.0, 0.0, 0] for bn in bns}

    def record(bn: nn.BatchNorm2d, inputs: tuple[torch.Tensor], _output: torch.Tensor) -> None:
        z = inputs[0].detach().double()
        acc = sums[bn]
        acc[0] = acc[0] + z.sum(dim=(0, 2, 3))
        acc[1] = acc[1] + (z * z).sum(dim=(0, 2, 3))
        acc[2] += z.numel() // z.shape[1]

    hooks = [bn.register_forward_hook(record) for bn in bns]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(images), batch):
                model(images[start : start + batch])
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    with torch.no_grad():
        for bn, (s, ss, n) in sums.items():
            mean = s / n
            var = (ss / n - mean * mean).clamp_min(0.0)
            bn.running_mean.copy_(mean.float()), bn.running_var.copy_(var.float())
            bn.bias.add_(mean.float())
            bn.weight.copy_(torch.sqrt(var + bn.eps).float())


def check_agreement(model: nn.Module, path: str | Path, images: torch.Tensor, file_size: tuple[int, int]) -> None:
    """The rebuilt network (eval mode) must compute what onnxruntime computes from the file
    (images: float [N, C, H, W] model inputs, resized to the file's size when they differ)."""
    from edgemeta.runtime.session import make_session

    x = images[:64]
    if tuple(x.shape[-2:]) != tuple(file_size):  # fine-tuning at another size: compare at the file's
        x = torch.nn.functional.interpolate(x, size=tuple(file_size), mode="bilinear", align_corners=False)
    session = make_session(path)
    expected = session.run(None, {session.get_inputs()[0].name: x.numpy().astype(np.float32)})[0]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        got = model(x).numpy()
    model.train(was_training)
    scale = max(float(np.abs(expected).max()), 1e-6)
    err = float(np.abs(got - expected).max()) / scale
    if not err <= AGREEMENT_TOLERANCE:
        raise CheckpointError(f"{path}: the rebuilt network does not reproduce the file (relative error {err:.2g})")


def warm_start_from_onnx(
    model: nn.Module, cfg: Any, spec: dict[str, Any], train_images: torch.Tensor, to_input: Any
) -> None:
    """Load ``cfg.init`` (an edgemeta ONNX file) into ``model`` (on the CPU or any device).

    spec: this run's preprocessing (``PreprocessSpec.to_dict()``); train_images: uint8
    [N, C, H, W] training images; to_input maps a batch of them to model inputs (float
    [B, C, H, W]). A fixed, seeded sample of them calibrates the BatchNorms."""
    meta, convs = read_onnx(cfg.init)
    check_compatible(cfg.init, meta, cfg, spec)
    device = next(model.parameters()).device
    model.cpu()
    try:
        load_folded(model, convs, cfg.init)
        pick = torch.randperm(len(train_images), generator=torch.Generator().manual_seed(cfg.seed))
        pick = pick[:CALIBRATION_IMAGES].to(train_images.device)
        images = to_input(train_images[pick]).float().contiguous().cpu()
        calibrate_batchnorm(model, images)
        check_agreement(model, cfg.init, images, tuple(meta["preprocess"]["size"]))
    finally:
        model.to(device)


def network_from_onnx(path: str | Path) -> nn.Module:
    """The torch network of an edgemeta fp32 ONNX file, in eval mode on the CPU (BatchNorms as
    the identity plus the folded bias): e.g. to time torch eager against the runtime on the
    very same weights. Checked against onnxruntime on random inputs."""
    from .backbones import build_backbone

    meta, convs = read_onnx(path)
    training, pre = meta.get("training") or {}, meta.get("preprocess") or {}
    try:
        model = build_backbone(
            str(training.get("backbone")), int(pre["channels"]), **(training.get("backbone_kwargs") or {})
        )
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot rebuild its network ({e})") from None
    load_folded(model, convs, path)
    x = torch.rand(8, int(pre["channels"]), *(int(s) for s in pre["size"]), generator=torch.Generator().manual_seed(0))
    check_agreement(model, path, x, tuple(pre["size"]))
    return model.eval()
