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


def plot_evaluation(
    result: dict, labels: np.ndarray, probs_by_role: dict[str, dict[str, np.ndarray]], path: str | Path
) -> Path:
    """Binary: reliability (calibration) curves and ROC of every scorer; multi-class: confusion matrices.

    ``probs_by_role`` is ``{"current": {"LSTM": p, "summary-stats baseline": p}, "candidate": {...}}``.
    """
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import roc_auc_score, roc_curve

    plt = _pyplot()
    scorers = {
        (name if role == "current" and "candidate" not in probs_by_role else f"{role}: {name}"): p
        for role, by_name in probs_by_role.items()
        for name, p in by_name.items()
    }
    if result["task"] == "binary":
        fig, (ax_rel, ax_roc) = plt.subplots(1, 2, figsize=(10, 4.2))
        bins = int(min(10, max(3, len(labels) // 20)))
        for name, p in scorers.items():
            frac, mean_pred = calibration_curve(labels, p, n_bins=bins, strategy="quantile")
            ax_rel.plot(mean_pred, frac, marker="o", ms=3, label=name)
            if len(np.unique(labels)) == 2:
                fpr, tpr, _ = roc_curve(labels, p)
                ax_roc.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, p):.3f})")
        ax_rel.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfectly calibrated")
        ax_rel.set(xlabel="mean predicted probability", ylabel="observed defect rate",
                   title=f"Reliability ({bins} quantile bins)")  # fmt: skip
        ax_roc.plot([0, 1], [0, 1], "k--", lw=0.8)
        ax_roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
        for ax in (ax_rel, ax_roc):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    else:
        names = result["class_names"]
        fig, axes = plt.subplots(1, len(scorers), figsize=(4.2 * len(scorers), 4), squeeze=False)
        for ax, (name, p) in zip(axes[0], scorers.items(), strict=True):
            from sklearn.metrics import ConfusionMatrixDisplay

            ConfusionMatrixDisplay.from_predictions(
                labels, p.argmax(axis=1), labels=list(range(len(names))), display_labels=names, ax=ax,
                colorbar=False, xticks_rotation=45,
            )  # fmt: skip
            acc = float(np.mean(p.argmax(axis=1) == labels))
            ax.set_title(f"{name}\naccuracy {acc:.3f}", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
