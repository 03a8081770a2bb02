"""``edgemeta bake``: an embedding model plus a prototype store -> one self-contained classifier graph.

The baked graph (plain ONNX, runs on any ONNX Runtime):

- input  ``images``     float32 [N, C, H, W], *normalized* exactly like the embedding model's input:
  ``(pixel / 255 - mean) / std`` per channel, at the model's size, channels and ink polarity
  (all in the ``edgemeta`` metadata entry, ``preprocess``);
- output ``embeddings`` float32 [N, D] (as the embedding model; L2-normalized when the metric is cosine),
  ``distances`` float32 [N, C] squared Euclidean distance to each prototype,
  ``scores`` float32 [N, C] softmax of ``-distances`` (what ``FewShotClassifier.predict`` reports),
  ``best_index`` int64 [N] index of the nearest prototype into ``labels``,
  ``accepted`` bool [N] nearest distance <= that class's limit, ``limits`` [C] (constants) from the
  rejection rule in force (runtime/rejection.py: tau * ||p||^2 * (1 + beta / shots) * classes ** -gamma;
  all true with --reject off);
- metadata ``labels`` (JSON list, index = class), ``edgemeta`` (the model's metadata) and
  ``edgemeta.classifier`` (JSON: labels, shots per class, model fingerprint).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edgemeta.runtime import nearest
from edgemeta.runtime.classifier import FewShotClassifier
from edgemeta.runtime.errors import ExportError
from edgemeta.runtime.metadata import CLASSIFIER_KEY, LABELS_KEY
from edgemeta.runtime.model import EmbeddingModel

PREFIX = "edgemeta_bake/"


def bake_proto(model: EmbeddingModel, clf: FewShotClassifier):
    """The classifier graph (onnx.ModelProto) for ``clf``'s prototypes around ``model``'s network."""
    import onnx

    labels, protos = clf.prototypes()
    if not labels:
        raise ExportError("the store holds no classes; enroll some before baking")
    proto = onnx.load_from_string(model.path.read_bytes())
    graph, meta = proto.graph, model.meta
    opset = max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    if opset < 13:
        raise ExportError(f"baking needs an embedding model with opset 13 or newer, this one has {opset}")
    _check_free_names(graph)
    out, raw = meta.output_name, PREFIX + "raw_embeddings"
    _rename(graph, out, raw)
    if meta.metric == "cosine":
        _add_l2_normalize(graph, raw, out, opset)
    else:
        graph.node.append(onnx.helper.make_node("Identity", [raw], [out]))
    _add_head(graph, out, protos.astype(np.float32), class_limits(clf, labels).astype(np.float32), opset)
    _set_outputs(graph, out, meta.embedding_dim, len(labels))
    _set_classifier_metadata(proto, model, clf, labels)
    return proto


def class_limits(clf: FewShotClassifier, labels: list[str]) -> np.ndarray:
    """float64 [C]: the rejection rule's squared-distance limit per class of ``labels`` (inf: none)."""
    counts = clf.counts()
    _, protos = clf.prototypes()
    wide = protos.astype(np.float64)  # the classifier's own ||p||^2: float32 prototypes widened
    return clf.operating_point().limits([counts[lab] for lab in labels], len(labels), nearest.squared_norms(wide))


def _check_free_names(graph) -> None:
    used = {n for node in graph.node for n in (*node.input, *node.output)} | {t.name for t in graph.initializer}
    clash = sorted(n for n in used if n.startswith(PREFIX) or n in ("distances", "scores", "best_index", "accepted"))
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


def _set_classifier_metadata(proto, model: EmbeddingModel, clf: FewShotClassifier, labels: list[str]) -> None:
    from .onnx_export import set_metadata

    counts = clf.counts()
    info: dict[str, Any] = {
        "format_version": 1,
        "labels": labels,
        "shots": [counts[lab] for lab in labels],
        "model_fingerprint": model.fingerprint,
        "input": model.meta.input_name,
        "input_is_normalized": True,
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
) -> dict[str, Any]:
    """Bake ``store``'s classes and ``model`` into ``out``, verified against ``FewShotClassifier.decide``;
    ``accepted`` follows the rejection operating point ``reject`` / ``far`` / ``threshold`` (as classify)."""
    from edgemeta.runtime.files import atomic_write

    from .files import check_writable
    from .verify import check_onnx

    out = Path(out).expanduser()
    check_writable(out)
    clf = FewShotClassifier.load(store, model, threshold=threshold, reject=reject, far=far)
    proto = bake_proto(model, clf)
    check_onnx(proto)
    data = proto.SerializeToString()
    report: dict[str, Any] = {}
    atomic_write(out, data, lambda tmp: report.update(verify_baked(tmp, clf)))
    return {
        "out": str(out),
        "bytes": len(data),
        "classes": len(clf.labels),
        "labels": clf.labels,
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
    from edgemeta.runtime.preprocess import normalize
    from edgemeta.runtime.session import make_session

    from .validation_data import synthetic_images

    spec = clf.model.meta.preprocess
    images, _ = synthetic_images(spec, classes=4, per_class=4, seed=1)
    x = normalize(clf.model.prepare(images), spec)
    sess = make_session(path)
    scores, best, accepted = sess.run(["scores", "best_index", "accepted"], {clf.model.meta.input_name: x})
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
    return {"verified_images": len(x), "max_score_diff": diff}
