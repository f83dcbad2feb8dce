"""Train on a plant's dataset file (readings + labels): split, search (models.recipe), baseline, checkpoint.

Writes into ``output_dir``: ``model.pt`` (checkpoint with channels + units, normalisation, threshold, class
names, data summary, the search, the baseline's parameters), ``metrics.json``, ``learning_curves.png``
and, when a test split is held out (``test_fraction > 0``), ``evaluation.json`` + ``evaluation.png``
on it. With ``test_fraction = 0`` (a separate test file exists) nothing is scored on test here:
``stream-app evaluate`` does that once.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from models.baseline import SummaryStatsLogistic
from models.checkpoint import save_checkpoint
from models.dataset_evaluation import score_model
from models.dataset_file import DatasetError, LabelledDataset, read_dataset
from models.metrics import binary_metrics, choose_threshold
from models.plots import plot_learning_curves
from models.recipe import run_search
from models.train import torch_threads

__all__ = ["split_labelled", "train_on_dataset_file"]


def _stratify(labels: np.ndarray) -> np.ndarray | None:
    return labels if np.bincount(labels).min() >= 2 else None


def split_labelled(
    data: LabelledDataset, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Stratified train/validation(/test) indices, deterministic from ``seed``."""
    idx = np.arange(len(data))
    test = np.array([], dtype=np.int64)
    if test_fraction > 0:
        idx, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=_stratify(data.labels))
    train, val = train_test_split(
        idx, test_size=val_fraction, random_state=seed + 1, stratify=_stratify(data.labels[idx])
    )
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _check_trainable(data: LabelledDataset, source: str) -> None:
    counts = np.bincount(data.labels, minlength=len(data.class_names))
    thin = [f"{name!r}: {int(n)}" for name, n in zip(data.class_names, counts, strict=True) if n < 2]
    if thin:
        raise DatasetError(
            f"{source}: every class needs at least 2 labelled castings to train and validate; "
            f"too few for {', '.join(thin)}"
        )


def train_on_dataset_file(
    readings: str | Path,
    labels: str | Path,
    channels: Sequence[dict[str, Any]],
    output_dir: str | Path,
    *,
    min_steps: int,
    max_steps: int,
    seed: int = 0,
    val_fraction: float = 0.25,
    test_fraction: float = 0.2,
    budget_s: float = 900.0,
    max_epochs: int | None = None,
    refit: bool = True,
    folds: int = 4,
    progress: bool = True,
    num_threads: int | None = None,
    report: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train on the castings of ``readings`` that ``labels`` labels; returns what ``metrics.json`` holds.

    ``channels`` are the stream config's ``validation.channels`` as ``{"name", "unit"}`` dicts, in order.
    """
    with torch_threads(num_threads):
        return _train(
            readings, labels, channels, Path(output_dir), min_steps, max_steps, seed, val_fraction,
            test_fraction, budget_s, max_epochs, refit, folds, progress, report,
        )  # fmt: skip


def _train(
    readings, labels, channels, out: Path, min_steps, max_steps, seed, val_fraction, test_fraction, budget_s,
    max_epochs, refit, folds, progress, report,
) -> dict[str, Any]:  # fmt: skip
    started = time.perf_counter()
    names = [c["name"] for c in channels]
    data = read_dataset(readings, labels, names, min_steps=min_steps, max_steps=max_steps)
    _check_trainable(data, str(labels))
    binary = data.is_binary
    num_classes = 1 if binary else len(data.class_names)
    split = split_labelled(data, val_fraction, test_fraction, seed)
    tr, va, te = (data.subset(split[k]) for k in ("train", "val", "test"))
    s = data.summary
    report(
        f"data: {s['castings_found']} castings found, {s['labelled']} labelled, {s['unlabelled']} unlabelled, "
        f"{s['labels_without_casting']} labels with no casting; classes {s['class_counts']}; "
        f"{len(names)} channels; split train {len(tr)} / validation {len(va)} / test {len(te)}"
    )
    search = run_search(
        (tr.sequences, tr.labels), (va.sequences, va.labels), num_classes=num_classes, seed=seed,
        budget_s=budget_s, max_epochs=max_epochs, refit=refit, folds=folds, progress=progress, report=report,
    )  # fmt: skip
    model = search.model
    pooled = refit or folds >= 2  # the final model learnt from train + validation
    seen = (
        (tr.sequences + va.sequences, np.concatenate([tr.labels, va.labels])) if pooled else (tr.sequences, tr.labels)
    )
    baseline = SummaryStatsLogistic().fit(seen[0], seen[1], seed=seed)
    metadata: dict[str, Any] = {
        "task": "binary" if binary else "multi-class",
        "channels": [{"name": c["name"], "unit": c.get("unit")} for c in channels],
        "class_names": data.class_names,
        "seed": seed,
        "data_summary": {**data.summary, "split": {k: int(len(v)) for k, v in split.items()},
                         "val_fraction": val_fraction, "test_fraction": test_fraction},
        "search": {**search.summary, "trials": search.trials},
        "baseline": baseline.to_dict(),
        "training": {"torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                     "torch": torch.__version__},
    }  # fmt: skip
    if binary:
        threshold = choose_threshold(search.val_labels, search.val_probs)
        metadata["threshold"] = threshold
        metadata["validation"] = binary_metrics(search.val_labels, search.val_probs, threshold)
    out.mkdir(parents=True, exist_ok=True)
    info = save_checkpoint(out / "model.pt", model, normalization=model.get_normalization(), metadata=metadata)
    metrics: dict[str, Any] = {
        "checkpoint": {"path": str(out / "model.pt"), "version": info["version"],
                       "parameters": model.count_parameters()},
        "data": metadata["data_summary"],
        "search": metadata["search"],
        "config": search.config.to_dict(),
        "total_seconds": round(time.perf_counter() - started, 1),
    }  # fmt: skip
    if len(te):
        from models.dataset_evaluation import format_result
        from models.plots import plot_evaluation

        scored, probs = score_model(model, info, te, te.labels)
        evaluation = {"data": {**te.summary, "split": "test", "n": len(te)}, "class_names": data.class_names,
                      "task": metadata["task"], "current": {**scored, "checkpoint": str(out / "model.pt")}}  # fmt: skip
        evaluation["data"]["class_counts"] = {
            n: int(np.sum(te.labels == k)) for k, n in enumerate(data.class_names)
        }
        metrics["test"] = evaluation["current"]
        (out / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n", encoding="utf-8")
        plot_evaluation(evaluation, te.labels, {"current": probs}, out / "evaluation.png")
        report("held-out test split:\n" + format_result(evaluation))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_learning_curves(search.history, out / "learning_curves.png")
    report(f"checkpoint {out / 'model.pt'} version {info['version']} ({metrics['total_seconds']:.0f} s in all)")
    return metrics
