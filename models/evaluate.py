"""Evaluation on a held-out split: LSTM metrics, the oracle (latent risk) and the summary-stats baseline.

``evaluate_on_splits`` is what training calls on its own test split; ``run_evaluation`` is what
``stream-app evaluate`` calls: it loads a checkpoint and rebuilds the data it was trained on from
the checkpoint's metadata (same generator seed, same split), or scores another dataset.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from models.baseline import SummaryStatsBaseline
from models.checkpoint import load_checkpoint
from models.dataset import pad_sequences
from models.dataset_io import DataSource, Splits, load_source, split_dataset, to_dataset
from models.lstm_model import SteelDefectLSTM
from models.metrics import binary_metrics
from models.synthetic import SyntheticCastings
from models.tracking import PerformanceTargets
from models.train import predict_dataset

__all__ = ["attention_on_mechanisms", "evaluate_on_splits", "evaluate_test_set", "run_evaluation"]

log = logging.getLogger(__name__)


def evaluate_test_set(
    model: SteelDefectLSTM,
    test: SyntheticCastings,
    threshold: float,
    baseline_train: SyntheticCastings | None = None,
    seed: int = 0,
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Metrics on ``test`` and the probabilities of every scorer (for plots)."""
    probs = {"LSTM": predict_dataset(model, to_dataset(test))}
    result: dict[str, Any] = {"lstm": binary_metrics(test.labels, probs["LSTM"], threshold)}
    if np.isfinite(test.risk).all():
        probs["oracle (latent risk)"] = test.risk
        result["oracle"] = {
            "auc_roc": float(roc_auc_score(test.labels, test.risk)),
            "auc_pr": float(average_precision_score(test.labels, test.risk)),
        }
        result["lstm_auc_over_oracle"] = result["lstm"]["auc_roc"] / result["oracle"]["auc_roc"]
    if baseline_train is not None:
        baseline = SummaryStatsBaseline(seed).fit(baseline_train.sequences, baseline_train.labels)
        probs["summary-stats baseline"] = baseline.predict_proba(test.sequences)
        result["baseline"] = binary_metrics(test.labels, probs["summary-stats baseline"], 0.5)
        result["baseline"]["model"] = "per-channel mean/std/min/max/slope -> HistGradientBoostingClassifier"
        result["lstm_minus_baseline_auc_roc"] = result["lstm"]["auc_roc"] - result["baseline"]["auc_roc"]
    result["attention"] = attention_on_mechanisms(model, test)
    result["targets"] = _targets(result)
    return result, probs


@torch.no_grad()
def attention_on_mechanisms(model: SteelDefectLSTM, data: SyntheticCastings, margin_steps: int = 3) -> dict[str, Any]:
    """How much attention lands on the planted defect mechanism (castings that have one).

    Compares the attention mass inside the mechanism's span (plus ``margin_steps`` each side) with the
    share of steps that span covers, i.e. what uniform attention would put there.
    """
    if data.spans is None:
        return {"n": 0}
    idx = np.flatnonzero(np.isfinite(data.spans[:, 0]))
    if len(idx) == 0:
        return {"n": 0}
    model.eval()
    mass, share = [], []
    for start in range(0, len(idx), 64):
        chunk = idx[start : start + 64]
        x, lengths = pad_sequences([data.sequences[i] for i in chunk])
        _, attention = model.forward_with_attention(torch.from_numpy(x), torch.from_numpy(lengths))
        weights = attention.double().cpu().numpy()  # (B, T)
        for row, i in enumerate(chunk):
            n = int(lengths[row])
            lo = max(int(np.floor(data.spans[i, 0])) - margin_steps, 0)
            hi = min(int(np.ceil(data.spans[i, 1])) + margin_steps, n - 1)
            mass.append(float(weights[row, lo : hi + 1].sum()))
            share.append((hi - lo + 1) / n)
    return {
        "n": int(len(idx)),
        "mean_attention_in_span": float(np.mean(mass)),
        "median_attention_in_span": float(np.median(mass)),
        "mean_span_share_of_steps": float(np.mean(share)),
    }


def _targets(result: dict[str, Any]) -> dict[str, bool]:
    lstm = result["lstm"]
    out = {
        "auc_roc_ge_0.88": lstm["auc_roc"] >= PerformanceTargets.auc_roc,
        "auc_pr_ge_0.75": lstm["auc_pr"] >= PerformanceTargets.auc_pr,
    }
    if "oracle" in result:
        out["auc_roc_ge_0.95_oracle"] = result["lstm_auc_over_oracle"] >= 0.95
    if "baseline" in result:
        out["baseline_at_least_0.05_below"] = result["lstm_minus_baseline_auc_roc"] >= 0.05
    return out


def evaluate_on_splits(
    model: SteelDefectLSTM, splits: Splits, threshold: float, seed: int = 0
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Test-split metrics; the baseline is fitted on the same training split as the model."""
    result, probs = evaluate_test_set(model, splits.test, threshold, baseline_train=splits.train, seed=seed)
    result["split_sizes"] = {k: int(len(v)) for k, v in splits.indices.items()}
    return result, probs


def run_evaluation(
    checkpoint: str | Path,
    source: DataSource | None = None,
    output: str | Path | None = None,
    plot_path: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint.

    ``source=None``: rebuild the checkpoint's own dataset and split from its metadata and score the
    test split. Otherwise the whole ``source`` is the test set, and the baseline is fitted on the
    checkpoint's training split when that can be rebuilt.
    """
    model, info = load_checkpoint(checkpoint)
    meta = info.get("metadata", {})
    threshold = float(meta.get("threshold", 0.5))
    data_meta = meta.get("data")
    own_splits: Splits | None = None
    if data_meta is not None:
        split_meta = meta["split"]
        own = load_source(DataSource.from_dict(data_meta))
        own_splits = split_dataset(own, split_meta["val_fraction"], split_meta["test_fraction"], split_meta["seed"])
    seed = int(meta.get("seed", 0))
    if source is None:
        if own_splits is None:
            raise ValueError(f"{checkpoint} has no data metadata; pass a dataset to evaluate on")
        result, probs = evaluate_on_splits(model, own_splits, threshold, seed)
        result["data"] = {**data_meta, "split": "test"}
        labels = own_splits.test.labels
    else:
        data = load_source(source)
        result, probs = evaluate_test_set(
            model, data, threshold, baseline_train=own_splits.train if own_splits else None, seed=seed
        )
        result["data"] = {**source.describe(), "split": "all"}
        labels = data.labels
    result["checkpoint"] = {"path": str(checkpoint), "version": info["version"]}
    if output is not None:
        Path(output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    if plot_path is not None:
        from models.plots import plot_roc_pr

        plot_roc_pr(labels, probs, plot_path)
    return result
