"""``edgemeta bake``: an embedding model plus a prototype store -> one self-contained classifier graph.

The baked graph (plain ONNX, runs on any ONNX Runtime):

- input, ``--input normalized`` (the default): ``images`` float32 [N, C, H, W], *normalized* exactly
  like the embedding model's input: ``(pixel / 255 - mean) / std`` per channel, at the model's size,
  channels and ink polarity (all in the ``edgemeta`` metadata entry, ``preprocess``);
  ``--input pixels``: ``pixels`` uint8 [N, H, W, 4], decoded RGBA images of one size (any size), the
  runtime's whole preprocessing in the graph (export/pixel_graph.py), bit-exact;
- output ``embeddings`` float32 [N, D] (as the embedding model; L2-normalized when the metric is cosine),
  ``distances`` float32 [N, C] squared Euclidean distance to each prototype,
  ``scores`` float32 [N, C] softmax of ``-distances`` (what ``FewShotClassifier.predict`` reports),
  ``best_index`` int64 [N] index of the nearest prototype into ``labels``,
  ``accepted`` bool [N] nearest distance <= that class's limit, ``limits`` [C] (constants) from the
  rejection rule in force (runtime/rejection.py: tau * ||p||^2 * (1 + beta / shots) * classes ** -gamma;
  all true with --reject off);
- metadata ``labels`` (JSON list, index = class), ``edgemeta`` (the model's metadata) and
  ``edgemeta.classifier`` (JSON: labels, shots per class, model fingerprint, ``input_kind``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgemeta.runtime import nearest
from edgemeta.runtime.classifier import FewShotClassifier
from edgemeta.runtime.errors import ExportError
from edgemeta.runtime.metadata import BAKED_INPUTS, CLASSIFIER_KEY, LABELS_KEY
from edgemeta.runtime.model import EmbeddingModel

from .pixel_graph import PIXELS
from .pixel_graph import PREFIX as PIXEL_PREFIX

PREFIX = "edgemeta_bake/"


def bake_proto(model: EmbeddingModel, clf: FewShotClassifier, input_kind: str = "normalized"):
    """The classifier graph (onnx.ModelProto) for ``clf``'s prototypes around ``model``'s network;
    ``input_kind`` one of ``BAKED_INPUTS``."""
    import onnx

    labels, protos = clf.prototypes()
    if not labels:
        raise ExportError("the store holds no classes; enroll some before baking")
    if input_kind not in BAKED_INPUTS:
        raise ExportError(f"unknown baked input {input_kind!r}; one of {BAKED_INPUTS}")
    proto = onnx.load_from_string(model.path.read_bytes())
    graph, meta = proto.graph, model.meta
    opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        raise ExportError(f"baking needs an embedding model with opset 13 or newer, this one has {opset}")
    _check_free_names(graph, input_kind)
    if input_kind == "pixels":
        _add_pixel_input(graph, meta)
    out, raw = meta.output_name, PREFIX + "raw_embeddings"
    _rename(graph, out, raw)
    if meta.metric == "cosine":
        _add_l2_normalize(graph, raw, out, opset)
    else:
        graph.node.append(onnx.helper.make_node("Identity", [raw], [out]))
    _add_head(graph, out, protos.astype(np.float32), class_limits(clf, labels).astype(np.float32), opset)
    _set_outputs(graph, out, meta.embedding_dim, len(labels))
    _set_classifier_metadata(proto, model, clf, labels, input_kind)
    return proto


def _add_pixel_input(graph, meta) -> None:
    """Replace the graph's normalized input by ``pixels`` and the preprocessing nodes that feed it."""
    from .pixel_graph import add_pixel_nodes, pixel_input_info

    nodes, inits = add_pixel_nodes(meta.preprocess, meta.input_name)
    kept = [v for v in graph.input if v.name != meta.input_name]
    del graph.input[:]
    graph.input.extend([pixel_input_info(), *kept])
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *old])  # topological order: preprocessing first
    graph.initializer.extend(inits)


def class_limits(clf: FewShotClassifier, labels: list[str]) -> np.ndarray:
    """float64 [C]: the rejection rule's squared-distance limit per class of ``labels`` (inf: none)."""
    counts = clf.counts()
    _, protos = clf.prototypes()
    wide = protos.astype(np.float64)  # the classifier's own ||p||^2: float32 prototypes widened
    return clf.operating_point().limits([counts[lab] for lab in labels], len(labels), nearest.squared_norms(wide))


def _check_free_names(graph, input_kind: str) -> None:
    used = {n for node in graph.node for n in (*node.input, *node.output)} | {t.name for t in graph.initializer}
    heads, prefixes = ["distances", "scores", "best_index", "accepted"], [PREFIX]
    if input_kind == "pixels":
        heads, prefixes = [*heads, PIXELS], [*prefixes, PIXEL_PREFIX]
    clash = sorted(n for n in used if n.startswith(tuple(prefixes)) or n in heads)
    if clash:
        raise ExportError(f"the model already uses names the baked head needs: {clash[:5]}")


def _reduce(op: str, x: str, out: str, opset: int, nodes: list, inits: list, keepdims: int) -> None:
    """``op`` over axis -1; axes became an input in opset 18."""
    from onnx import helper, numpy_helper

    if opset >= 18:
        axes = PREFIX + out.removeprefix(PREFIX) + "_axes"
        inits.append(numpy_helper.from_array(np.array([-1], np.int64), axes))
        nodes.append(helper.make_node(op, [x, axes], [out], keepdims=keepdims))
    else:
        nodes.append(helper.make_node(op, [x], [out], axes=[-1], keepdims=keepdims))


def _rename(graph, old: str, new: str) -> None:
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]


def _add_l2_normalize(graph, raw: str, out: str, opset: int) -> None:
    """``nearest.l2_normalize`` as nodes: out = raw / max(||raw||, NORM_EPS), as the classifier embeds for cosine."""
    from onnx import helper, numpy_helper

    p, nodes, inits = PREFIX, [], [numpy_helper.from_array(np.array(nearest.NORM_EPS, np.float32), PREFIX + "eps")]
    _reduce("ReduceSumSquare", raw, p + "sq", opset, nodes, inits, keepdims=1)
    nodes += [
        helper.make_node("Sqrt", [p + "sq"], [p + "norm"]),
        helper.make_node("Max", [p + "norm", p + "eps"], [p + "norm_eps"]),
        helper.make_node("Div", [raw, p + "norm_eps"], [out]),
    ]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)


def _add_head(graph, emb: str, protos: np.ndarray, limits: np.ndarray, opset: int) -> None:
    """runtime/nearest.py's formula as nodes (tests/test_nearest.py checks them against it): distances
    [N, C] (``squared_distances``), scores (``softmax_scores``), best_index (top 1); accepted."""
    from onnx import helper, numpy_helper

    p = PREFIX
    # Direct differences, not ||q||^2 - 2 q.p + ||p||^2: no cancellation (that form's float32 rounding
    # moves trained-model scores by ~1e-5), and [N, C, D] stays small for few-shot class counts.
    inits = [
        numpy_helper.from_array(protos, p + "prototypes"),
        numpy_helper.from_array(np.array([1], np.int64), p + "axis1"),
        numpy_helper.from_array(limits, p + "limits"),
    ]
    nodes = [
        helper.make_node("Unsqueeze", [emb, p + "axis1"], [p + "q"]),  # [N, 1, D]
        helper.make_node("Sub", [p + "q", p + "prototypes"], [p + "diff"]),
    ]  # [N, C, D]
    _reduce("ReduceSumSquare", p + "diff", "distances", opset, nodes, inits, keepdims=0)
    nodes += [
        helper.make_node("Neg", ["distances"], [p + "neg"]),
        helper.make_node("Softmax", [p + "neg"], ["scores"], axis=1),
        helper.make_node("ArgMin", ["distances"], ["best_index"], axis=1, keepdims=0),
    ]
    _reduce("ReduceMin", "distances", p + "nearest", opset, nodes, inits, keepdims=0)
    nodes += [
        helper.make_node("Gather", [p + "limits", "best_index"], [p + "limit"], axis=0),
        helper.make_node("LessOrEqual", [p + "nearest", p + "limit"], ["accepted"]),
    ]
    graph.node.extend(nodes)
    graph.initializer.extend(inits)


def _set_outputs(graph, emb: str, dim: int, classes: int) -> None:
    from onnx import TensorProto, helper

    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(emb, TensorProto.FLOAT, ["batch", dim]),
            helper.make_tensor_value_info("distances", TensorProto.FLOAT, ["batch", classes]),
            helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", classes]),
            helper.make_tensor_value_info("best_index", TensorProto.INT64, ["batch"]),
            helper.make_tensor_value_info("accepted", TensorProto.BOOL, ["batch"]),
        ]
    )


def _set_classifier_metadata(
    proto, model: EmbeddingModel, clf: FewShotClassifier, labels: list[str], input_kind: str
) -> None:
    from .onnx_export import set_metadata

    counts = clf.counts()
    info: dict[str, Any] = {
        "format_version": 1,
        "labels": labels,
        "shots": [counts[lab] for lab in labels],
        "model_fingerprint": model.fingerprint,
        "input": PIXELS if input_kind == "pixels" else model.meta.input_name,
        "input_kind": input_kind,
        "input_is_normalized": input_kind == "normalized",
        "outputs": ["embeddings", "distances", "scores", "best_index", "accepted"],
        "rejection": clf.operating_point().to_dict(),
        "limits": [float(x) if np.isfinite(x) else None for x in class_limits(clf, labels)],
    }
    set_metadata(
        proto,
        model.meta,
        {
            LABELS_KEY: json.dumps(labels, ensure_ascii=False),
            CLASSIFIER_KEY: json.dumps(info, ensure_ascii=False, sort_keys=True),
        },
    )


def bake(
    model: EmbeddingModel,
    store: str | Path,
    out: str | Path,
    *,
    reject: str | None = None,
    far: float | None = None,
    threshold: float | None = None,
    input_kind: str = "normalized",
) -> dict[str, Any]:
    """Bake ``store``'s classes and ``model`` into ``out``, verified against ``FewShotClassifier.decide``;
    ``accepted`` follows the rejection operating point ``reject`` / ``far`` / ``threshold`` (as classify);
    ``input_kind``: what the graph takes, one of ``BAKED_INPUTS``."""
    from edgemeta.runtime.files import atomic_write

    from .files import check_writable
    from .pixel_graph import check_pixel_spec
    from .verify import check_onnx

    out = Path(out).expanduser()
    check_writable(out)
    if input_kind == "pixels":
        check_pixel_spec(model.meta.preprocess)  # before the store: the model alone decides it
    clf = FewShotClassifier.load(store, model, threshold=threshold, reject=reject, far=far)
    proto = bake_proto(model, clf, input_kind)
    check_onnx(proto)
    data = proto.SerializeToString()
    report: dict[str, Any] = {}
    atomic_write(out, data, lambda tmp: report.update(verify_baked(tmp, clf)))
    return {
        "out": str(out),
        "bytes": len(data),
        "classes": len(clf.labels),
        "labels": clf.labels,
        "input_kind": input_kind,
        "metric": model.meta.metric,
        "rejection": clf.operating_point().to_dict(),
        **report,
    }


def verify_baked(path: Path, clf: FewShotClassifier, tol: float = 1e-5) -> dict[str, Any]:
    """Plain onnxruntime on the baked file vs the runtime on the same inputs.

    Scores must be within ``tol`` of an exact (float64) evaluation of the runtime's own embeddings and
    prototypes, and top-1 must equal ``clf.predict``'s wherever the two nearest classes are not tied
    within float32 rounding.
    """
    from edgemeta.runtime.session import make_session

    sess = make_session(path)
    name = sess.get_inputs()[0].name
    inputs = verification_inputs(clf, name == PIXELS)
    runs = [sess.run(["scores", "best_index", "accepted"], {name: feed}) for feed, _ in inputs]
    scores, best, accepted = (np.concatenate(parts) for parts in zip(*runs))
    images = inputs[0][1] if len(inputs) == 1 else [im for _, batch in inputs for im in batch]  # sizes differ
    _, protos = clf.prototypes()
    exact = nearest.softmax_scores(nearest.squared_distances(clf.embed(images), protos))  # float64 [N, C]
    diff = float(np.abs(scores - exact).max())
    top, ok = clf.decide(images, top_k=min(2, len(clf.labels)))
    index = {lab: i for i, lab in enumerate(clf.labels)}
    tied = np.array([len(r) > 1 and r[1].distance - r[0].distance <= 1e-5 * max(1.0, r[0].distance) for r in top])
    same = np.array([index[r[0].label] for r in top]) == best
    limits = class_limits(clf, clf.labels)[[index[r[0].label] for r in top]]
    at_limit = np.array([abs(r[0].distance - lim) <= 1e-5 * max(1.0, lim) for r, lim in zip(top, limits)])
    decided = (np.array(ok) == accepted) | tied | at_limit
    if not (diff <= tol and np.all(same | tied) and np.all(decided)):
        raise ExportError(
            f"baked classifier disagrees with the runtime (max score diff {diff:.3g}, "
            f"{int((~same & ~tied).sum())} different top-1 labels, {int((~decided).sum())} "
            f"different accept decisions)"
        )
    return {"verified_images": len(images), "max_score_diff": diff}


def verification_inputs(clf: FewShotClassifier, pixels: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """(what the baked graph takes, the same images for the runtime) per batch: synthetic images at the
    model's size, normalized; with ``pixels``, RGBA batches of several sizes (``verification_pixels``)."""
    from edgemeta.runtime.preprocess import normalize

    from .pixel_graph import verification_pixels
    from .validation_data import synthetic_images

    spec = clf.model.meta.preprocess
    images, _ = synthetic_images(spec, classes=4, per_class=4, seed=1)
    if pixels:
        return [(batch, batch) for batch in verification_pixels(images, seed=1)]
    return [(normalize(clf.model.prepare(images), spec), images)]
