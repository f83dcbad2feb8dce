"""Metrics shared by training and evaluation (plain numpy/scikit-learn, no torch)."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

__all__ = ["binary_metrics", "choose_threshold", "multiclass_metrics"]


def binary_metrics(labels: np.ndarray, probs: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """AUC-ROC, AUC-PR (average precision) and F1/precision/recall at ``threshold``."""
    labels = np.asarray(labels).astype(int)
    probs = np.asarray(probs, dtype=np.float64)
    pred = (probs >= threshold).astype(int)
    both = len(np.unique(labels)) == 2
    return {
        "auc_roc": float(roc_auc_score(labels, probs)) if both else float("nan"),
        "auc_pr": float(average_precision_score(labels, probs)) if both else float("nan"),
        "f1": float(f1_score(labels, pred, zero_division=0)),
        "precision": float(precision_score(labels, pred, zero_division=0)),
        "recall": float(recall_score(labels, pred, zero_division=0)),
        "accuracy": float(accuracy_score(labels, pred)),
        "threshold": float(threshold),
        "positive_rate": float(labels.mean()),
        "n": int(len(labels)),
    }


def choose_threshold(labels: np.ndarray, probs: np.ndarray) -> float:
    """Threshold maximising F1 (pick it on validation data, never on the test split)."""
    precision, recall, thresholds = precision_recall_curve(np.asarray(labels).astype(int), probs)
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    if len(thresholds) == 0:
        return 0.5
    return float(thresholds[int(np.argmax(f1[:-1]))])


def multiclass_metrics(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    labels = np.asarray(labels).astype(int)
    pred = np.asarray(probs).argmax(axis=1)
    return {
        "accuracy": float(accuracy_score(labels, pred)),
        "macro_f1": float(f1_score(labels, pred, average="macro", zero_division=0)),
        "n": int(len(labels)),
    }
