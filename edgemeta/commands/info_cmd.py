"""``info``: what a model, a baked classifier or a prototype store holds (numpy + onnxruntime only)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from .options import json_option, load_model


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
@json_option()
def info(path: Path, as_json: bool) -> None:
    """Show what a model (.onnx) or a prototype store (.npz) holds."""
    from edgemeta.runtime.errors import EdgemetaError

    if not path.is_file():
        raise EdgemetaError(f"file not found: {path}")
    with path.open("rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    doc = _store_info(path) if is_zip else _model_info(path)
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    for key, value in doc.items():
        shown = json.dumps(value) if isinstance(value, (dict, list)) else value
        click.echo(f"{key:>18}: {shown}")


def _model_info(path: Path) -> dict[str, Any]:
    from edgemeta.runtime.errors import ModelError
    from edgemeta.runtime.model import baked_classifier_info

    try:
        model = load_model(path)
    except ModelError:
        baked = baked_classifier_info(path)
        if baked is None:
            raise
        return {"kind": "classifier", "path": str(path), **baked}
    m = model.meta
    return {
        "kind": "model",
        "path": str(path),
        "fingerprint": model.fingerprint,
        "bytes": path.stat().st_size,
        "provider": model.provider,
        "embedding_dim": m.embedding_dim,
        "metric": m.metric,
        "threshold": m.threshold,
        "rejection": m.rejection.to_dict() if m.rejection else None,
        "support_shift": m.support_shift,
        "format_version": m.format_version,
        "channels": f"{m.preprocess.channels} ({'RGB' if m.preprocess.channels == 3 else 'grayscale'})",
        "preprocess": m.preprocess.to_dict(),
        "training": m.training,
        "accuracy": m.accuracy,
        **_model_summaries(m),
    }


def _model_summaries(m: Any) -> dict[str, Any]:
    """Held-out accuracy, store sharing and the domain check, in words and in full."""
    from edgemeta.runtime.domain import describe_domain
    from edgemeta.runtime.interchange import describe_sharing

    check = m.accuracy.get("export_check") or {}
    held_out = (
        (
            f"{check.get('way')}-way {check.get('shot')}-shot {100 * check['accuracy']:.2f}% "
            f"± {100 * check.get('ci95', 0):.2f} on {check.get('held_out')} ({check.get('classes')} classes, "
            f"{check.get('episodes')} episodes)"
        )
        if check.get("held_out") and "accuracy" in check
        else "not recorded"
    )
    return {
        "held_out_accuracy": held_out,
        "shares_stores": describe_sharing(m),
        "network": m.network,
        "domain_check": describe_domain(m.domain),
        "domain": m.domain,
    }


def _store_info(path: Path) -> dict[str, Any]:
    from edgemeta.runtime.store import read_store

    c = read_store(path)
    return {
        "kind": "store",
        "path": str(path),
        "classes": len(c.labels),
        "embedding_dim": int(c.sums.shape[1]),
        "metric": c.metric,
        "model_fingerprint": c.model_fingerprint,
        "network_id": c.network_id or None,
        # Labels as stored: JSON escapes control characters itself, and escaping here too would
        # merge distinct labels such as "a\n" and "a\\n".
        "shots": {lab: int(n) for lab, n in zip(c.labels, c.counts)},
    }
