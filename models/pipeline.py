"""One training run end to end: data -> splits -> normalisation -> fit -> threshold -> test metrics -> files.

Writes into ``output_dir``: ``model.pt`` (checkpoint), ``metrics.json`` (test metrics, oracle, baseline,
training summary), ``history.jsonl`` (one line per epoch), ``learning_curves.png`` and ``roc_pr.png``.
The threshold is the F1-optimal one on the validation split; the test split is only scored.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from models.checkpoint import save_checkpoint
from models.config import LSTMConfig
from models.dataset_io import DataSource, load_source, split_dataset, to_dataset
from models.evaluate import evaluate_on_splits
from models.lstm_model import SteelDefectLSTM
from models.metrics import binary_metrics, choose_threshold
from models.plots import plot_learning_curves, plot_roc_pr
from models.train import fit, predict_dataset, set_seed, torch_threads

__all__ = ["SplitSpec", "run_training"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SplitSpec:
    val_fraction: float = 0.15
    test_fraction: float = 0.25
    seed: int = 0


def run_training(
    config: LSTMConfig,
    source: DataSource,
    output_dir: str | Path,
    *,
    seed: int = 0,
    split: SplitSpec | None = None,
    progress: bool = True,
    num_threads: int | None = None,
    channels: list[dict[str, Any]],
) -> dict[str, Any]:
    """Train the binary defect model on ``source``; returns the dict written to ``metrics.json``.

    ``num_threads`` sets torch's CPU threads for the run (restored afterwards). ``channels`` (the stream
    config's ``{"name", "unit"}`` rows, in order; the stream config is the only list of channels) is recorded
    in the checkpoint.
    """
    if config.classifier.num_classes != 1:
        raise ValueError("run_training trains the binary defect model (classifier.num_classes = 1)")
    with torch_threads(num_threads):
        return _run_training(config, source, Path(output_dir), seed, split or SplitSpec(), progress, channels)


def _run_training(
    config: LSTMConfig,
    source: DataSource,
    out: Path,
    seed: int,
    split: SplitSpec,
    progress: bool,
    channels: list[dict[str, Any]],
) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    data = load_source(source)
    splits = split_dataset(data, split.val_fraction, split.test_fraction, split.seed)
    log.info("data: %s; split sizes %s", source.describe(), {k: len(v) for k, v in splits.indices.items()})
    n_inputs = int(data.sequences[0].shape[1])
    if len(channels) != n_inputs or config.architecture.input_size != n_inputs:
        raise ValueError(
            f"the data have {n_inputs} channels, the config's input_size is {config.architecture.input_size} "
            f"and the channel set names {len(channels)} ({', '.join(c['name'] for c in channels)})"
        )
    max_len = config.data_processing.sequence_length
    train_ds, val_ds = to_dataset(splits.train, max_len), to_dataset(splits.val, max_len)

    set_seed(seed)
    model = SteelDefectLSTM(config)
    if model.use_input_norm:
        model.fit_normalization(train_ds.sequences)  # training split, valid steps only
    result = fit(
        model, train_ds, val_ds, config.training, config.regularization,
        seed=seed, metrics_path=out / "history.jsonl", progress=progress,
    )  # fmt: skip
    val_probs = predict_dataset(model, val_ds)
    threshold = choose_threshold(splits.val.labels, val_probs)
    val_metrics = binary_metrics(splits.val.labels, val_probs, threshold)

    test_result, probs = evaluate_on_splits(model, splits, threshold, seed)
    training_summary = {
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "best_val_auc_pr": result.best_score,
        "train_seconds": round(result.train_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    metadata = {
        "task": "casting_defect",
        "threshold": threshold,
        "seed": seed,
        "data": source.describe(),
        "split": {"val_fraction": split.val_fraction, "test_fraction": split.test_fraction, "seed": split.seed},
        "training": training_summary,
        "validation": val_metrics,
        "test": {k: test_result["lstm"][k] for k in ("auc_roc", "auc_pr", "f1", "precision", "recall")},
        "channels": [{"name": c["name"], "unit": c.get("unit")} for c in channels],
        "class_names": ["0", "1"],
        "data_summary": {"source": source.describe(), "castings": len(data), "prevalence": float(data.labels.mean()),
                         "split_sizes": {k: int(len(v)) for k, v in splits.indices.items()}},
    }
    info = save_checkpoint(out / "model.pt", model, normalization=model.get_normalization(), metadata=metadata)
    metrics = {
        "checkpoint": {"path": str(out / "model.pt"), "version": info["version"],
                       "size_bytes": (out / "model.pt").stat().st_size,
                       "parameters": model.count_parameters()},
        "test": test_result,
        "validation": val_metrics,
        "training": training_summary,
        "data": {**source.describe(), "prevalence": float(data.labels.mean()), "n": len(data)},
        "config": config.to_dict(),
    }  # fmt: skip
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_learning_curves(result.history, out / "learning_curves.png")
    plot_roc_pr(splits.test.labels, probs, out / "roc_pr.png")
    log.info("wrote %s (version %s)", out / "model.pt", info["version"])
    return metrics
