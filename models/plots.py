"""PNG plots: learning curves, ROC and precision-recall curves (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["plot_learning_curves", "plot_roc_pr"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_learning_curves(history: list[dict[str, float]], path: str | Path) -> Path:
    plt = _pyplot()
    epochs = [row["epoch"] for row in history]
    metrics = [m for m in ("loss", "auc_roc", "auc_pr", "accuracy") if f"val_{m}" in history[0]]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3.2))
    for ax, metric in zip(np.atleast_1d(axes), metrics, strict=True):
        for split in ("train", "val"):
            key = f"{split}_{metric}"
            if key in history[0]:
                ax.plot(epochs, [row[key] for row in history], marker="o", ms=3, label=split)
        ax.set_title(metric)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def plot_roc_pr(labels: np.ndarray, curves: dict[str, np.ndarray], path: str | Path) -> Path:
    """ROC and PR curves of several scorers (name -> probabilities) on the same labels."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    plt = _pyplot()
    fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(9, 4))
    for name, probs in curves.items():
        fpr, tpr, _ = roc_curve(labels, probs)
        ax_roc.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, probs):.3f})")
        prec, rec, _ = precision_recall_curve(labels, probs)
        ax_pr.plot(rec, prec, label=f"{name} (AP {average_precision_score(labels, probs):.3f})")
    ax_roc.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    ax_pr.axhline(float(np.mean(labels)), color="k", ls="--", lw=0.8)
    ax_pr.set(xlabel="recall", ylabel="precision", title="Precision-recall")
    for ax in (ax_roc, ax_pr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if ax is ax_roc else "lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
