"""Model-agnostic training loop (binary or multiclass) with early stopping on a validation split.

``fit`` takes any module whose ``forward(x, lengths)`` returns logits ``(B,)`` (binary) or ``(B, K)``.
AdamW (Adam with decoupled weight decay), gradient-norm clipping, an LR schedule (plateau or cosine),
class weighting, early stopping on validation AUC-PR (binary) or accuracy (multiclass) with the best
weights restored, a rich progress bar, and one JSON line of metrics per epoch.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from models.config import RegularizationConfig, TrainingConfig
from models.dataset import CastingSequenceDataset, LengthBucketSampler, collate_padded
from models.metrics import binary_metrics, multiclass_metrics
from models.tracking import LSTMPerformanceTracker

__all__ = ["FitResult", "fit", "predict_dataset", "set_seed", "torch_threads"]

log = logging.getLogger(__name__)


@contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Use ``n`` torch CPU threads inside the block (``None``: leave as is), then restore."""
    before = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def set_seed(seed: int) -> None:
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class FitResult:
    history: list[dict[str, float]]
    best_epoch: int
    best_score: float
    train_seconds: float
    stopped_early: bool
    tracker: LSTMPerformanceTracker = field(repr=False)


def _loader(ds: CastingSequenceDataset, batch_size: int, shuffle: bool, seed: int) -> DataLoader:
    sampler = LengthBucketSampler(ds.lengths, batch_size, shuffle=shuffle, seed=seed)
    return DataLoader(ds, batch_sampler=sampler, collate_fn=collate_padded)


@torch.no_grad()
def predict_dataset(model: nn.Module, ds: CastingSequenceDataset, batch_size: int = 128) -> np.ndarray:
    """Probabilities in dataset order: (N,) for one logit, (N, K) for a softmax head."""
    was_training = model.training
    model.eval()
    out: list[np.ndarray] = []
    order: list[int] = []
    for idx in LengthBucketSampler(ds.lengths, batch_size, shuffle=False):
        x, lengths, _ = collate_padded([ds[i] for i in idx])
        logits = model(x, lengths)
        probs = torch.sigmoid(logits) if logits.ndim == 1 else torch.softmax(logits, dim=-1)
        out.append(probs.cpu().numpy())
        order.extend(idx)
    model.train(was_training)
    probs = np.concatenate(out, axis=0)
    result = np.empty_like(probs)
    result[np.asarray(order)] = probs
    return result


def _loss_fn(labels: np.ndarray, multiclass: bool, num_classes: int, weighted: bool) -> nn.Module:
    if multiclass:
        weight = None
        if weighted:
            counts = np.bincount(labels.astype(int), minlength=num_classes).astype(np.float64)
            weight = torch.tensor(counts.sum() / np.maximum(counts, 1) / num_classes, dtype=torch.float32)
        return nn.CrossEntropyLoss(weight=weight)
    pos = float(np.sum(labels == 1))
    pos_weight = torch.tensor((len(labels) - pos) / max(pos, 1.0)) if weighted else None
    return nn.BCEWithLogitsLoss(pos_weight=pos_weight)


def _unweighted_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean cross-entropy of probabilities (no class weights), for validation curves."""
    eps = 1e-7
    labels = np.asarray(labels).astype(int)
    if probs.ndim == 2:
        return float(-np.mean(np.log(np.clip(probs[np.arange(len(labels)), labels], eps, 1.0))))
    p = np.clip(probs, eps, 1 - eps)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


_HISTORY_KEYS = ("loss", "auc_roc", "auc_pr", "accuracy")


def _train_epoch(
    model: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    optimizer: torch.optim.Optimizer,
    gradient_clip: float,
    multiclass: bool,
    advance: Callable[[], None],
) -> dict[str, float]:
    model.train()
    total_loss, seen = 0.0, 0
    probs, labels = [], []
    for x, lengths, y in loader:
        logits = model(x, lengths)  # (B,) or (B, K)
        loss = criterion(logits, y.long() if multiclass else y.float())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), gradient_clip)
        optimizer.step()
        total_loss += loss.item() * len(y)
        seen += len(y)
        with torch.no_grad():
            probs.append((torch.softmax(logits, -1) if multiclass else torch.sigmoid(logits)).numpy())
        labels.append(y.numpy())
        advance()
    p, y_all = np.concatenate(probs), np.concatenate(labels)
    metrics = multiclass_metrics(y_all, p) if multiclass else binary_metrics(y_all, p)
    metrics["loss"] = total_loss / max(seen, 1)  # class-weighted training loss
    return metrics


def _validate(model: nn.Module, val_ds: CastingSequenceDataset, multiclass: bool) -> dict[str, float]:
    probs = predict_dataset(model, val_ds)
    metrics = multiclass_metrics(val_ds.labels, probs) if multiclass else binary_metrics(val_ds.labels, probs)
    metrics["loss"] = _unweighted_loss(val_ds.labels, probs)
    return metrics


def _score(metrics: dict[str, float], multiclass: bool, tie_break_loss: bool = False) -> float:
    score = metrics["accuracy"] if multiclass else metrics["auc_pr"]
    # on a small validation split accuracy ties often; a tiny loss term breaks ties towards the better fit
    return score - 1e-3 * min(metrics["loss"], 10.0) if tie_break_loss else score


def fit(
    model: nn.Module,
    train_ds: CastingSequenceDataset,
    val_ds: CastingSequenceDataset,
    training: TrainingConfig,
    regularization: RegularizationConfig,
    *,
    seed: int = 0,
    metrics_path: str | Path | None = None,
    progress: bool = True,
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    max_seconds: float | None = None,
    tie_break_loss: bool = False,
) -> FitResult:
    """Train ``model`` in place; on return it holds the best weights (by validation score).

    ``max_seconds``: stop after the epoch that crosses this training time (``stopped_early`` is then True).
    ``tie_break_loss``: the validation score subtracts 1e-3 x validation loss, so equal accuracies prefer
    the lower loss.
    """
    set_seed(seed)
    num_classes = int(getattr(model, "num_classes", 1))
    multiclass = num_classes > 1
    criterion = _loss_fn(train_ds.labels, multiclass, num_classes, training.class_weighting)
    optimizer = torch.optim.AdamW(
        (p for p in model.parameters() if p.requires_grad),
        lr=training.learning_rate,
        weight_decay=regularization.weight_decay,
    )
    if training.lr_schedule == "plateau":
        scheduler: Any = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5, patience=2)
    elif training.lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=training.num_epochs)
    else:
        scheduler = None
    loader = _loader(train_ds, training.batch_size, shuffle=True, seed=seed)
    tracker = LSTMPerformanceTracker()
    history: list[dict[str, float]] = []
    best_score, best_epoch, best_state = -np.inf, -1, copy.deepcopy(model.state_dict())
    stale, stopped_early = 0, False
    metrics_file = None
    if metrics_path is not None:
        Path(metrics_path).parent.mkdir(parents=True, exist_ok=True)
        metrics_file = open(metrics_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in finally

    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(
        TextColumn("epoch {task.fields[epoch]}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        disable=not progress,
    )
    start = time.perf_counter()
    try:
        with bar:
            task = bar.add_task("train", total=len(loader), epoch=0, status="")
            for epoch in range(1, training.num_epochs + 1):
                bar.reset(task, total=len(loader), epoch=epoch)
                epoch_start = time.perf_counter()
                train_m = _train_epoch(
                    model,
                    loader,
                    criterion,
                    optimizer,
                    regularization.gradient_clip,
                    multiclass,
                    lambda: bar.advance(task),
                )
                val_m = _validate(model, val_ds, multiclass)
                score = _score(val_m, multiclass, tie_break_loss)
                lr = optimizer.param_groups[0]["lr"]
                row = {"epoch": epoch, "lr": lr, "seconds": time.perf_counter() - epoch_start}
                row.update({f"train_{k}": v for k, v in train_m.items() if k in _HISTORY_KEYS})
                row.update({f"val_{k}": v for k, v in val_m.items() if k in _HISTORY_KEYS})
                history.append(row)
                tracker.log_training_metrics(epoch, {k: v for k, v in train_m.items() if k != "n"})
                tracker.log_validation_metrics(epoch, {k: v for k, v in val_m.items() if k != "n"})
                if metrics_file is not None:
                    metrics_file.write(json.dumps(row) + "\n")
                    metrics_file.flush()
                if on_epoch is not None:
                    on_epoch(row)
                improved = score > best_score + 1e-4
                if improved:
                    best_score, best_epoch, stale = score, epoch, 0
                    best_state = copy.deepcopy(model.state_dict())
                else:
                    stale += 1
                status = f"val score {score:.4f} (best {best_score:.4f} @ {best_epoch}) loss {val_m['loss']:.4f}"
                bar.update(task, status=status)
                log.info("epoch %d: train loss %.4f, %s, lr %.2e", epoch, train_m["loss"], status, lr)
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step(score)
                elif scheduler is not None:
                    scheduler.step()
                out_of_time = max_seconds is not None and time.perf_counter() - start >= max_seconds
                if stale >= training.early_stopping_patience or out_of_time:
                    stopped_early = True
                    break
    finally:
        if metrics_file is not None:
            metrics_file.close()
    model.load_state_dict(best_state)
    model.eval()
    return FitResult(history, best_epoch, float(best_score), time.perf_counter() - start, stopped_early, tracker)
