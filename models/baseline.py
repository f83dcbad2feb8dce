"""Summary-statistics baseline: per-channel mean/std/min/max/slope into gradient-boosted trees.

It sees how much of each signal there is but not the order of events, which is what the LSTM adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

__all__ = ["SummaryStatsBaseline", "SummaryStatsLogistic", "summary_features"]


def summary_features(sequences: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 5 * C): per channel mean, std, min, max and least-squares slope per step."""
    rows = []
    for seq in sequences:
        x = np.asarray(seq, dtype=np.float64)  # (T, C)
        t = np.arange(len(x), dtype=np.float64)
        tc = t - t.mean()
        denom = float(tc @ tc) or 1.0
        slope = tc @ (x - x.mean(axis=0)) / denom
        rows.append(np.concatenate([x.mean(0), x.std(0), x.min(0), x.max(0), slope]))
    return np.asarray(rows)


class SummaryStatsBaseline:
    def __init__(self, seed: int = 0) -> None:
        self.clf = HistGradientBoostingClassifier(random_state=seed)

    def fit(self, sequences: Sequence[np.ndarray], labels: np.ndarray) -> SummaryStatsBaseline:
        self.clf.fit(summary_features(sequences), np.asarray(labels).astype(int))
        return self

    def predict_proba(self, sequences: Sequence[np.ndarray]) -> np.ndarray:
        """(N,) probability of the positive class."""
        return self.clf.predict_proba(summary_features(sequences))[:, 1]


class SummaryStatsLogistic:
    """The summary statistics into a standardised (multinomial) logistic regression, binary or multi-class.

    The baseline beside every model trained on a dataset file. Its few parameters are plain lists
    (`to_dict`), stored in the checkpoint, so `evaluate` scores it on any dataset without the training data.
    """

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.params = params

    def fit(self, sequences: Sequence[np.ndarray], labels: np.ndarray, seed: int = 0) -> SummaryStatsLogistic:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        x = summary_features(sequences)
        scaler = StandardScaler().fit(x)
        clf = LogisticRegression(max_iter=5000, random_state=seed).fit(scaler.transform(x), np.asarray(labels))
        self.params = {
            "model": "per-channel mean/std/min/max/slope -> StandardScaler -> LogisticRegression (C=1)",
            "mean": scaler.mean_.tolist(),
            "scale": scaler.scale_.tolist(),
            "coef": clf.coef_.tolist(),
            "intercept": clf.intercept_.tolist(),
            "classes": [int(c) for c in clf.classes_],
        }
        return self

    def to_dict(self) -> dict[str, Any]:
        if self.params is None:
            raise ValueError("the baseline is not fitted")
        return dict(self.params)

    def predict_proba(self, sequences: Sequence[np.ndarray], num_classes: int) -> np.ndarray:
        """(N,) positive-class probability when ``num_classes == 1``; else (N, num_classes) (unseen classes 0)."""
        p = self.to_dict()
        x = (summary_features(sequences) - np.asarray(p["mean"])) / np.asarray(p["scale"])
        z = x @ np.asarray(p["coef"]).T + np.asarray(p["intercept"])  # (N, 1) for two classes, else (N, K')
        classes = p["classes"]
        if z.shape[1] == 1:
            pos = 1.0 / (1.0 + np.exp(-z[:, 0]))
            probs = np.stack([1.0 - pos, pos], axis=1)
        else:
            z = z - z.max(axis=1, keepdims=True)
            probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
        if num_classes == 1:
            return probs[:, classes.index(1)] if 1 in classes else np.zeros(len(x))
        out = np.zeros((len(x), num_classes))
        out[:, classes] = probs
        return out
