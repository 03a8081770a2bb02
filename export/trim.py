"""Stop convolutions from computing rows and columns that a following pooling never reads.

Floor-mode pooling drops the trailing rows of an odd-sized map: a 2x2, stride-2 max-pool over a
7x7 map reads the first 6 rows and columns. Conv-4 on 28x28 images meets this twice (its third
convolution makes 7x7 maps, its fourth 3x3), so 0.66 M of its 9.8 M multiply-adds per image go
into values nothing reads. Lowering such a stride-1 convolution's end padding by the number of
unread rows makes it compute only the rows the pooling reads, through the same windows over the
same inputs: the network's outputs do not change (bit for bit on onnxruntime's CPU provider),
and it runs about 5% faster (benchmarks/README.md).

``python -m edgemeta.export.trim MODEL.onnx ...`` rewrites existing files in place, after
checking through onnxruntime that each computes the same embeddings as before; the old file's
fingerprint goes into the new file's metadata so that prototype stores made with it still load.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

import numpy as np

# Ops that act on each position separately, so a row nothing reads after them was not needed
# before them either. QuantizeLinear/DequantizeLinear sit between Conv and MaxPool in int8 files.
PER_POSITION_OPS = {
    "Relu",
    "LeakyRelu",
    "Clip",
    "Sigmoid",
    "Tanh",
    "BatchNormalization",
    "QuantizeLinear",
    "DequantizeLinear",
}
POOL_OPS = {"MaxPool", "AveragePool"}


def _attrs(node) -> dict[str, Any]:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _rows_read_by_pool(pool, size: tuple[int, int]) -> tuple[int, int] | None:
    """How many leading rows and columns of a [.., H, W] map ``pool`` reads; None when it is not
    a plain floor-mode pooling (padding, dilation, ceil mode, indices output) or reads it all."""
    a = _attrs(pool)
    kernel, strides = list(a.get("kernel_shape", [])), list(a.get("strides", [1, 1]))
    plain = (
        len(kernel) == 2
        and len(strides) == 2
        and not any(a.get("pads", [0] * 4))
        and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
        and not a.get("ceil_mode", 0)
        and all(d == 1 for d in a.get("dilations", [1, 1]))
        and len([o for o in pool.output if o]) == 1
    )
    if not plain or any(n < k for n, k in zip(size, kernel)):
        return None
    read = tuple((n - k) // s * s + k for n, k, s in zip(size, kernel, strides))
    return None if read == tuple(size) else read  # type: ignore[return-value]


def _path_to_pool(conv_out: str, consumers: dict[str, list], graph_outputs: set[str]) -> tuple[list[str], Any] | None:
    """The tensors from ``conv_out`` through per-position ops to a pooling, and that pooling;
    None when any of them is read by anything else."""
    tensors, name = [conv_out], conv_out
    while name not in graph_outputs and len(consumers.get(name, [])) == 1:
        node = consumers[name][0]
        if node.input[0] != name:
            return None
        if node.op_type in POOL_OPS:
            return tensors, node
        if node.op_type not in PER_POSITION_OPS or len([o for o in node.output if o]) != 1:
            return None
        name = node.output[0]
        tensors.append(name)
    return None


def _plain_stride1_conv(conv) -> list[int] | None:
    """The explicit pads [top, left, bottom, right] of a 2-D stride-1 Conv, else None."""
    a = _attrs(conv)
    if conv.op_type != "Conv" or len(a.get("kernel_shape", [0, 0])) != 2:
        return None
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or any(s != 1 for s in a.get("strides", [1, 1])):
        return None
    return list(a.get("pads", [0, 0, 0, 0]))


def _spatial_sizes(model) -> dict[str, tuple[int, int]]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    sizes = {}
    for info in list(inferred.graph.value_info) + list(inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and all(d.HasField("dim_value") for d in dims[2:]):
            sizes[info.name] = (dims[2].dim_value, dims[3].dim_value)
    return sizes


def trim_unread_conv_outputs(model) -> int:
    """Lower the end padding of each stride-1 Conv whose trailing output rows or columns a
    floor-mode pooling never reads (through per-position ops only). Edits ``model`` (an
    onnx.ModelProto) in place and drops the shapes it recorded for the tensors that shrank;
    returns how many convolutions changed."""
    graph = model.graph
    if any(a.type in (a.GRAPH, a.GRAPHS) for n in graph.node for a in n.attribute):
        return 0  # subgraphs may read any tensor; not worth following
    sizes = _spatial_sizes(model)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    shrunk: set[str] = set()
    changed = 0
    for conv in graph.node:
        pads = _plain_stride1_conv(conv)
        found = _path_to_pool(conv.output[0], consumers, graph_outputs) if pads is not None else None
        read = _rows_read_by_pool(found[1], sizes[conv.output[0]]) if found and conv.output[0] in sizes else None
        if read is None:
            continue
        unread = [n - r for n, r in zip(sizes[conv.output[0]], read)]
        new_pads = pads[:2] + [max(0, p - u) for p, u in zip(pads[2:], unread)]
        if new_pads != pads:
            next(a for a in conv.attribute if a.name == "pads").ints[:] = new_pads
            shrunk.update(found[0])
            changed += 1
    kept = [v for v in graph.value_info if v.name not in shrunk]
    del graph.value_info[:]
    graph.value_info.extend(kept)
    return changed


def _max_output_change(old: bytes, new: bytes, batch: int = 8) -> float:
    """Max |new - old| over every output, both run by onnxruntime on the same standard-normal
    float32 [batch, C, H, W] input (the normalized range)."""
    from edgemeta.runtime.session import make_session

    before = make_session(old)
    info = before.get_inputs()[0]
    feed = {info.name: np.random.default_rng(0).standard_normal([batch, *info.shape[1:]]).astype(np.float32)}
    pairs = zip(before.run(None, feed), make_session(new).run(None, feed))
    return max(float(np.abs(a - b).max(initial=0.0)) for a, b in pairs)


def _with_equivalent_fingerprint(proto, fingerprint: str) -> None:
    """Record ``fingerprint`` in the edgemeta metadata (when the file has it) as a file whose
    stores this one may load."""
    from dataclasses import replace

    from edgemeta.runtime.metadata import METADATA_KEY, ModelMetadata

    from .onnx_export import set_metadata

    text = next((p.value for p in proto.metadata_props if p.key == METADATA_KEY), None)
    if text is None:
        return
    meta = ModelMetadata.from_json(text)
    if fingerprint not in meta.equivalent_fingerprints:
        set_metadata(proto, replace(meta, equivalent_fingerprints=(*meta.equivalent_fingerprints, fingerprint)))


def trim_file(path: str | Path, atol: float = 1e-5) -> dict[str, Any]:
    """Trim the model file ``path`` in place; returns {"path", "convs", "max_abs_diff", "fingerprint"}.
    Nothing is written when no convolution changes, or (ExportError) when the trimmed network's
    outputs differ from the old one's by more than ``atol`` on random inputs."""
    import onnx

    from edgemeta.runtime.errors import ExportError
    from edgemeta.runtime.files import atomic_write
    from edgemeta.runtime.model import EmbeddingModel

    path = Path(path)
    if not path.is_file():
        raise ExportError(f"model not found: {path}")
    data = path.read_bytes()
    try:
        proto = onnx.load_from_string(data)
    except Exception as e:
        raise ExportError(f"not a valid ONNX model: {path} ({type(e).__name__})") from None
    old = hashlib.sha256(data).hexdigest()
    convs = trim_unread_conv_outputs(proto)
    report: dict[str, Any] = {"path": str(path), "convs": convs, "max_abs_diff": 0.0, "fingerprint": old}
    if convs == 0:
        return report
    _with_equivalent_fingerprint(proto, old)
    new = proto.SerializeToString()
    diff = _max_output_change(data, new)
    if not diff <= atol:
        raise ExportError(f"trimming {path} changed its outputs by up to {diff:.3g}; file left as it was")
    atomic_write(path, new, lambda tmp: EmbeddingModel(tmp))
    report.update(max_abs_diff=diff, fingerprint=hashlib.sha256(new).hexdigest())
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m edgemeta.export.trim MODEL.onnx ...``: trim each file in place."""
    from edgemeta.runtime.errors import EdgemetaError

    paths = sys.argv[1:] if argv is None else argv
    if not paths:
        print("usage: python -m edgemeta.export.trim MODEL.onnx ...", file=sys.stderr)
        return 2
    for path in paths:
        try:
            r = trim_file(path)
        except EdgemetaError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if r["convs"]:
            print(
                f"{path}: {r['convs']} convolution(s) trimmed, outputs differ by {r['max_abs_diff']:.3g}, "
                f"fingerprint now {r['fingerprint'][:12]}"
            )
        else:
            print(f"{path}: nothing to trim")
    return 0


if __name__ == "__main__":
    sys.exit(main())
