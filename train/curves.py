"""Learning curves PNG from ``metrics.jsonl`` (skipped with a note when matplotlib is missing)."""

from __future__ import annotations

import json
from pathlib import Path


def read_metrics(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(metrics_path: Path, out_png: Path) -> str | None:
    """Loss, train accuracy and validation accuracy against episodes. Returns a note if skipped."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed: curves.png skipped"
    rows = read_metrics(metrics_path)
    train = [r for r in rows if "loss" in r]
    val = [r for r in rows if "val_acc" in r]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    ax1.plot([r["episode"] for r in train], [r["loss"] for r in train], label="train loss")
    ax1.set_xlabel("episodes"), ax1.set_ylabel("loss"), ax1.legend()
    ax2.plot([r["episode"] for r in train], [r["train_acc"] for r in train], label="train acc")
    if val:
        ax2.errorbar(
            [r["episode"] for r in val],
            [r["val_acc"] for r in val],
            yerr=[r["val_ci95"] for r in val],
            label=f"val acc ({val[-1].get('val_task', '')})",
            capsize=2,
        )
    ax2.set_xlabel("episodes"), ax2.set_ylabel("accuracy"), ax2.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return None
