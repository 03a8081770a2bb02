"""Build a Conv-4 28x28 edgemeta model (random weights) for benchmarks: ONNX file + matching checkpoint.

Speed does not depend on the weights, so this stands in for the trained model until
``models/default.onnx`` exists. Needs torch and onnx (the export extra).

    python benchmarks/conv4_model.py OUT_DIR      # writes OUT_DIR/conv4.onnx and OUT_DIR/conv4.pt
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import onnx
import torch

from edgemeta.runtime.metadata import METADATA_KEY, ModelMetadata
from edgemeta.runtime.preprocess import PreprocessSpec
from edgemeta.train.backbones import Conv4
from edgemeta.train.checkpoint import save_checkpoint


def random_conv4(seed: int = 0) -> torch.nn.Module:
    """Conv4 in eval mode with random weights and BatchNorm statistics (so BN is not a no-op)."""
    torch.manual_seed(seed)
    net = Conv4(in_channels=1)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    return net.eval()


def export_onnx(net: torch.nn.Module, path: Path, size: int = 28) -> Path:
    """Export ``net`` with a dynamic batch axis and attach edgemeta metadata."""
    x = torch.zeros(2, 1, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter is all this needs
        torch.onnx.export(
            net,
            (x,),
            str(path),
            input_names=["images"],
            output_names=["embeddings"],
            dynamic_axes={"images": {0: "N"}, "embeddings": {0: "N"}},
            opset_version=17,
            dynamo=False,
        )
    model = onnx.load(str(path))
    meta = ModelMetadata(
        preprocess=PreprocessSpec(size=(size, size), channels=1, polarity="light_on_dark", mean=(0.1,), std=(0.3,)),
        embedding_dim=64,
        training={"backbone": "conv4", "data": "random weights (benchmark)"},
    )
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, meta.to_json()
    onnx.save(model, str(path))
    return path


def build(out_dir: Path, seed: int = 0) -> tuple[Path, Path]:
    """OUT_DIR/conv4.onnx and OUT_DIR/conv4.pt (a checkpoint ``--vs-torch`` accepts) of one network."""
    out_dir.mkdir(parents=True, exist_ok=True)
    net = random_conv4(seed)
    onnx_path = export_onnx(net, out_dir / "conv4.onnx")
    ckpt = out_dir / "conv4.pt"
    save_checkpoint(ckpt, {"config": {"backbone": "conv4", "in_channels": 1}, "model": net.state_dict()})
    return onnx_path, ckpt


if __name__ == "__main__":
    for p in build(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/edgemeta-bench")):
        print(p)
