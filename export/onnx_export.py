"""torch -> ONNX for an embedding network, and the edgemeta metadata inside the file.

The network maps float32 [N, C, H, W] ("images") -> float32 [N, D] ("embeddings") with a
dynamic batch axis. The dynamo exporter (``torch.export``) runs first; a backbone it cannot
take goes through the legacy TorchScript exporter, and the caller is told which one ran.
"""

from __future__ import annotations

import io
import logging
import warnings
from typing import Any

from edgemeta.runtime.errors import ExportError
from edgemeta.runtime.metadata import METADATA_KEY, ModelMetadata
from edgemeta.runtime.preprocess import PreprocessSpec

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"
OPSET = 18
TRACE_BATCH = 2
EXPORTERS = ("auto", "dynamo", "legacy")
log = logging.getLogger(__name__)


def example_input(spec: PreprocessSpec, batch: int = TRACE_BATCH, seed: int = 0):
    """A float32 [batch, C, H, W] tensor in the normalized input range."""
    import torch

    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, spec.channels, *spec.size, generator=g)


def export_network(model, spec: PreprocessSpec, exporter: str = "auto", opset: int = OPSET):
    """Export ``model`` (eval mode); returns (onnx.ModelProto, the exporter that ran: dynamo | legacy)."""
    if exporter not in EXPORTERS:
        raise ExportError(f"unknown exporter {exporter!r}; one of {EXPORTERS}")
    x = example_input(spec)
    if exporter in ("auto", "dynamo"):
        try:
            return _export_dynamo(model, x, opset), "dynamo"
        except Exception as e:  # the dynamo path fails in many ways on exotic modules
            if exporter == "dynamo":
                raise ExportError(f"dynamo exporter failed: {_first_line(e)}") from None
            log.warning("dynamo exporter failed (%s); falling back to the legacy exporter", _first_line(e))
    try:
        return _export_legacy(model, x, opset), "legacy"
    except Exception as e:
        raise ExportError(f"legacy exporter failed: {_first_line(e)}") from None


def _export_dynamo(model, x, opset: int):
    import torch

    batch = torch.export.Dim("batch", min=1, max=1 << 20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            model,
            (x,),
            dynamo=True,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            verbose=False,
        )
    proto = program.model_proto
    _check_names(proto)
    return proto


def _export_legacy(model, x, opset: int):
    import onnx
    import torch

    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (x,),
            buf,
            dynamo=False,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
        )
    proto = onnx.load_from_string(buf.getvalue())
    _check_names(proto)
    return proto


def _check_names(proto) -> None:
    ins = [i.name for i in proto.graph.input if i.name not in {t.name for t in proto.graph.initializer}]
    outs = [o.name for o in proto.graph.output]
    if ins != [INPUT_NAME] or outs != [OUTPUT_NAME]:
        raise RuntimeError(
            f"exported graph has inputs {ins} and outputs {outs}, expected [{INPUT_NAME!r}] and [{OUTPUT_NAME!r}]"
        )


def set_metadata(proto, meta: ModelMetadata, extra: dict[str, str] | None = None) -> None:
    """Write ``meta`` (and ``extra`` string entries) into ``proto.metadata_props``, replacing old values."""
    entries = {METADATA_KEY: meta.to_json(), **(extra or {})}
    keep = [p for p in proto.metadata_props if p.key not in entries]
    del proto.metadata_props[:]
    for p in keep:
        proto.metadata_props.add(key=p.key, value=p.value)
    for key, value in entries.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "edgemeta"


def training_summary(config: dict[str, Any], episode: int | None, source: str) -> dict[str, Any]:
    """The ``training`` section: what the network was trained on and how."""
    keys = ("data", "split", "backbone", "backbone_kwargs", "way", "shot", "query", "episodes", "seed")
    summary = {k: config[k] for k in keys if k in config}
    summary["episodes_done"] = episode
    summary["checkpoint"] = source
    return summary


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
