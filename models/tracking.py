"""``LSTMPerformanceTracker``: per-epoch metrics and measured inference time / memory against targets.

The targets are the original design's: AUC-ROC > 0.88, AUC-PR > 0.75, < 200 ms per sequence,
< 4 GB memory. A ``meets_*`` flag is ``None`` until something has been measured for it; the flags judge
the best validation AUC and the worst (slowest) batch logged.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LSTMPerformanceTracker", "PerformanceTargets"]


class PerformanceTargets:
    auc_roc = 0.88
    auc_pr = 0.75
    inference_ms_per_sequence = 200.0
    memory_mb = 4096.0


class LSTMPerformanceTracker:
    def __init__(self, targets: type[PerformanceTargets] | PerformanceTargets = PerformanceTargets) -> None:
        self.targets = targets
        self.training_history: list[dict[str, Any]] = []
        self.validation_history: list[dict[str, Any]] = []
        self.inference_times: list[dict[str, float]] = []
        self.memory_usage_mb: list[float] = []

    def log_training_metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        self.training_history.append({"epoch": int(epoch), **{k: float(v) for k, v in metrics.items()}})

    def log_validation_metrics(self, epoch: int, metrics: dict[str, float]) -> None:
        self.validation_history.append({"epoch": int(epoch), **{k: float(v) for k, v in metrics.items()}})

    def log_inference_time(self, batch_size: int, inference_time: float) -> None:
        """``inference_time`` in seconds for a whole batch of ``batch_size`` sequences."""
        if batch_size < 1 or inference_time < 0:
            raise ValueError("batch_size must be >= 1 and inference_time >= 0")
        self.inference_times.append(
            {
                "batch_size": batch_size,
                "seconds": float(inference_time),
                "ms_per_sequence": 1000.0 * inference_time / batch_size,
            }
        )

    def log_memory_usage(self, memory_mb: float) -> None:
        if memory_mb < 0:
            raise ValueError("memory_mb must be >= 0")
        self.memory_usage_mb.append(float(memory_mb))

    def _best(self, key: str) -> float | None:
        values = [m[key] for m in self.validation_history if key in m]
        return max(values) if values else None

    def get_performance_summary(self) -> dict[str, Any]:
        """Every key is always present; a value is ``None`` until something was logged for it.

        The original design's keys: ``latest_training_metrics`` / ``latest_validation_metrics`` (the last
        epoch's dicts), ``avg_inference_time_per_sample`` (seconds per sequence, mean over the logged
        batches), ``peak_memory_usage_mb`` and the ``meets_*`` flags.
        """
        best_auc, best_pr = self._best("auc_roc"), self._best("auc_pr")
        per_sample_s = [r["seconds"] / r["batch_size"] for r in self.inference_times]
        worst_ms = max((r["ms_per_sequence"] for r in self.inference_times), default=None)
        peak_mb = max(self.memory_usage_mb, default=None)
        latest_train = dict(self.training_history[-1]) if self.training_history else None
        latest_val = dict(self.validation_history[-1]) if self.validation_history else None
        t = self.targets
        return {
            "latest_training_metrics": latest_train,
            "latest_validation_metrics": latest_val,
            "avg_inference_time_per_sample": sum(per_sample_s) / len(per_sample_s) if per_sample_s else None,
            "peak_memory_usage_mb": peak_mb,
            "epochs_trained": len(self.training_history),
            "best_val_auc_roc": best_auc,
            "best_val_auc_pr": best_pr,
            "final_train": latest_train,  # the same dicts under this project's earlier names
            "final_validation": latest_val,
            "max_inference_ms_per_sequence": worst_ms,
            "peak_memory_mb": peak_mb,
            "meets_auc_target": None if best_auc is None else best_auc > t.auc_roc,
            "meets_auc_pr_target": None if best_pr is None else best_pr > t.auc_pr,
            "meets_inference_target": None if worst_ms is None else worst_ms < t.inference_ms_per_sequence,
            "meets_memory_target": None if peak_mb is None else peak_mb < t.memory_mb,
        }
