"""Summary-statistics baseline: per-channel mean/std/min/max/slope into gradient-boosted trees.

It sees how much of each signal there is but not the order of events, which is what the LSTM adds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

__all__ = ["SummaryStatsBaseline", "summary_features"]


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
