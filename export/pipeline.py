"""``edgemeta export``: checkpoint -> verified ONNX model file (fp32, or int8 with ``int8=True``).

Nothing reaches ``out`` unless every check passed: the model is written to a temporary file
beside it, loaded back through the runtime, and only then renamed over ``out``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgemeta.runtime.errors import ExportError
from edgemeta.runtime.files import atomic_write
from edgemeta.runtime.metadata import ModelMetadata
from edgemeta.runtime.preprocess import check_support_shift
from edgemeta.runtime.rejection import RejectionRule
from edgemeta.runtime.session import make_session

from .checkpoint import Checkpoint, build_model, load_checkpoint
from .files import check_writable
from .onnx_export import export_network, set_metadata, training_summary
from .threshold import calibrate_rejection, legacy_threshold
from .trim import trim_unread_conv_outputs
from .validation_data import ImageSet, choose_source, domain_metadata, load_images, load_validation
from .verify import FP32, INT8, check_onnx, compare, embed_onnx, embed_onnx_support, embed_torch, few_shot_accuracy

log = logging.getLogger(__name__)


@dataclass
class ExportOptions:
    """threshold: "auto" (chosen on validation data), None (no rejection) or a squared distance."""

    out: Path
    int8: bool = False
    force: bool = False
    data: str | None = None
    split: str | None = None
    threshold: float | str | None = "auto"
    exporter: str = "auto"
    episodes: int = 200
    seed: int = 0
    support_shift: int = 1


def run_export(checkpoint: str | Path, opts: ExportOptions, say: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Export, verify and write ``opts.out``; returns a report of what was done and measured."""
    out = Path(opts.out).expanduser()
    check_writable(out)
    ckpt = load_checkpoint(checkpoint)
    model, spec = build_model(ckpt), ckpt.preprocess
    val = load_validation(ckpt.config, opts.data, opts.split, ckpt.preprocess, seed=opts.seed)
    say(f"verification data: {val.source} ({val.split or 'all'}), {len(val.images)} images")
    proto, exporter = export_network(model, spec, opts.exporter)
    trimmed = trim_unread_conv_outputs(proto)
    say(
        f"exported with the {exporter} exporter"
        + (f"; {trimmed} convolution(s) trimmed to the rows pooling reads" if trimmed else "")
    )
    reference = embed_torch(model, val.images, spec)
    fp32_session = make_session(proto.SerializeToString())
    emb = embed_onnx(fp32_session, val.images, spec)
    report: dict[str, Any] = {
        "checkpoint": str(ckpt.path),
        "exporter": exporter,
        "opset": _opset(proto),
        "trimmed_convs": trimmed,
        "data": val.describe(),
        "parity": compare(reference, emb, val.targets, _metric(ckpt), FP32, opts.episodes, opts.seed),
    }
    say(
        f"fp32 parity: max abs diff {report['parity']['max_abs_diff']:.3g}, decisions identical in {opts.episodes} episodes"
    )
    report["accuracy"] = few_shot_accuracy(emb, val.targets, _metric(ckpt), seed=opts.seed)
    meta = _metadata(ckpt, emb, val, opts, report, exporter, support=_support(fp32_session, val, ckpt, opts))
    meta = replace(meta, network={"id": ckpt.network_id, "reference": True}, domain=domain_metadata(ckpt.config, val))
    set_metadata(proto, meta)
    check_onnx(proto)
    final, reference_final = proto, emb
    if opts.int8:
        final, reference_final = _int8(ckpt, proto, meta, reference, val, opts, report, say)
    data = final.SerializeToString()
    write_verified(out, data, val.images[:64], reference_final[:64], tol=1e-4)
    report.update(out=str(out), bytes=len(data), threshold=ModelMetadata.from_json(_meta_json(final)).threshold)
    return report


def _metric(ckpt: Checkpoint) -> str:
    return str(ckpt.config.get("metric", "sqeuclidean"))


def _opset(proto) -> int:
    return max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _meta_json(proto) -> str:
    return next(p.value for p in proto.metadata_props if p.key == "edgemeta")


def _training_images(ckpt: Checkpoint, opts: ExportOptions) -> ImageSet:
    source, split = choose_source(ckpt.config, opts.data, opts.split)
    return load_images(source, split, ckpt.preprocess, explicit=opts.data is not None, seed=opts.seed)


def _support(sess, val: ImageSet, ckpt: Checkpoint, opts: ExportOptions) -> np.ndarray | None:
    """The validation images embedded as the runtime enrolls them (float32 [M, D]), when the
    threshold is to be chosen on them; None otherwise."""
    if opts.threshold != "auto" or val.synthetic:
        return None
    return embed_onnx_support(sess, val.images, ckpt.preprocess, check_support_shift(opts.support_shift))


def _metadata(
    ckpt: Checkpoint,
    emb: np.ndarray,
    val: ImageSet,
    opts: ExportOptions,
    report: dict[str, Any],
    exporter: str,
    precision: str = "fp32",
    support: np.ndarray | None = None,
) -> ModelMetadata:
    """The model's metadata; the rejection rule is calibrated on ``emb`` (float32 [M, D]) as queries
    and ``support`` (float32 [M, D]) as enrolled images, unless a threshold is given."""
    threshold, rule, how = _threshold(emb, val, opts, _metric(ckpt), support)
    report["threshold_method"] = how
    accuracy = {"best_val": ckpt.best_val, "export_check": {**report["accuracy"], **val.describe()}, "rejection": how}
    if report.get("int8"):
        accuracy["int8"] = report["int8"]["accuracy"]
    training = training_summary(ckpt.config, ckpt.episode, ckpt.path.name)
    training.update(exporter=exporter, opset=report["opset"], precision=precision)
    return ModelMetadata(
        preprocess=ckpt.preprocess,
        embedding_dim=int(emb.shape[1]),
        metric=_metric(ckpt),
        threshold=threshold,
        support_shift=check_support_shift(opts.support_shift),
        training=training,
        accuracy=accuracy,
        rejection=rule,
    )


def _threshold(
    emb: np.ndarray, val: ImageSet, opts: ExportOptions, metric: str, support: np.ndarray | None
) -> tuple[float | None, RejectionRule | None, dict[str, Any]]:
    """(legacy threshold, rejection rule, how they were chosen)."""
    if opts.threshold is None:
        return None, None, {"method": "none", "reason": "--threshold none"}
    if opts.threshold != "auto":
        value = float(opts.threshold)
        if not (np.isfinite(value) and value > 0):
            raise ExportError(f"--threshold must be a positive number, 'auto' or 'none', got {opts.threshold}")
        return value, None, {"method": "user"}
    if val.synthetic:
        return None, None, {"method": "none", "reason": "no real validation data (synthetic images)"}
    rule, how = calibrate_rejection(emb, val.targets, metric, seed=opts.seed, support_emb=support)
    how = {**how, "support_shift": opts.support_shift, **val.describe()}
    if rule is None:
        return None, None, how
    summary = {k: v for k, v in how.items() if k != "kinds"}
    return legacy_threshold(rule, how["median_sq_norm"]), replace(rule, calibration=summary), how


def _int8(
    ckpt: Checkpoint,
    proto,
    meta: ModelMetadata,
    reference: np.ndarray,
    val: ImageSet,
    opts: ExportOptions,
    report: dict[str, Any],
    say: Callable[[str], None],
):
    """Quantize, verify against torch, check the accuracy change; returns (int8 proto, its embeddings)."""
    import onnx

    from .quantize import accuracy_change, calibration_subset, quantize_int8, throughput

    calib = _training_images(ckpt, opts)
    fp32_bytes = proto.SerializeToString()
    q_bytes = quantize_int8(fp32_bytes, calibration_subset(calib.images, seed=opts.seed), ckpt.preprocess)
    q_session = make_session(q_bytes)
    emb = embed_onnx(q_session, val.images, ckpt.preprocess)
    parity = compare(reference, emb, val.targets, _metric(ckpt), INT8, opts.episodes, opts.seed)
    acc = accuracy_change(
        report["accuracy"], few_shot_accuracy(emb, val.targets, _metric(ckpt), seed=opts.seed), opts.force
    )
    speed = throughput({"fp32": fp32_bytes, "int8": q_bytes}, ckpt.preprocess, batch=64, threads=1)
    fp32_tp, int8_tp = speed["fp32"], speed["int8"]
    report["int8"] = {
        "parity": parity,
        "accuracy": acc,
        "calibration": {**calib.describe(), "used": min(len(calib.images), 300)},
        "throughput_batch64": {"fp32": fp32_tp, "int8": int8_tp, "ratio": int8_tp / fp32_tp, "threads": 1},
    }
    say(f"int8: accuracy change {acc['change_points']:+.2f} points, throughput x{int8_tp / fp32_tp:.2f} at batch 64")
    q = onnx.load_from_string(q_bytes)
    q_meta = _metadata(
        ckpt, emb, val, opts, report, meta.training["exporter"], "int8", support=_support(q_session, val, ckpt, opts)
    )
    # fp32 decisions equal torch's (checked with FP32's min_agreement 1.0), so int8's agreement with
    # torch on the same episodes is its agreement with the fp32 file.
    agreement = {
        "top1": parity["decision_agreement"],
        "decisions": parity["decisions"],
        "episodes": parity["episodes"],
        **{k: v for k, v in val.describe().items() if k != "synthetic"},
    }
    set_metadata(
        q,
        replace(
            q_meta, network={"id": meta.network["id"], "reference": False, "agreement": agreement}, domain=meta.domain
        ),
    )
    check_onnx(q)
    return q, emb


def write_verified(out: Path, data: bytes, images: np.ndarray, expected: np.ndarray, tol: float) -> None:
    """Write ``data`` to ``out`` atomically, after the runtime has loaded it and reproduced ``expected``."""
    from edgemeta.runtime.model import EmbeddingModel

    def check(tmp: Path) -> None:
        got = EmbeddingModel(tmp).embed_prepared(images)
        if not np.abs(got - expected).max(initial=0.0) <= tol:
            raise ExportError("the written model does not reproduce the verified embeddings through the runtime")

    atomic_write(out, data, check)
