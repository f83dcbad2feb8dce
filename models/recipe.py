"""The training recipe for a plant's own data: a small, time-bounded validation search, then one final fit.

What the synthetic defaults chose by hand (variant, learning rate) the recipe chooses on a validation
hold-out of the training data, never on a test split:

* candidates, in this order: Conv1d front-end of 3 blocks + bi-LSTM at lr 3e-3, 1 block + bi-LSTM at
  3e-3, bi-LSTM alone at 3e-3, 3 blocks + bi-LSTM at 1e-3 (blocks: 32 filters, kernel 7, ReLU; bi-LSTM
  hidden 32, masked attention pooling, batch norm, MLP head [32], AdamW, cosine LR);
  each is trained with early stopping on the validation split (AUC-PR for binary, accuracy for multi-class,
  ties broken by the lower validation loss), fixed seed;
* sizes follow the data: batch 8/16/32 (under 100 / under 1000 / more training castings), about 2000
  optimiser steps (30..300 epochs), patience a quarter of that;
* the search stops starting new candidates once ``budget_s`` seconds are spent (the first always runs) and
  stops any one candidate after ``budget_s / 2``; what was tried, skipped and chosen is printed and
  stored in the checkpoint;
* the best candidate (validation score, then lower validation loss, then the earlier one) is retrained
  on train + validation for its best epoch count when ``refit`` (small datasets gain most from the extra
  data; the LR plateau schedule then follows the training score);
* the binary decision threshold is the F1-optimal one on the search run's validation predictions.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.config import LSTMConfig, validate_lstm_config
from models.dataset import CastingSequenceDataset
from models.lstm_model import SteelDefectLSTM
from models.train import fit, predict_dataset, set_seed

__all__ = ["Candidate", "SearchResult", "default_candidates", "run_search"]

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class Candidate:
    name: str
    learning_rate: float
    conv_channels: int
    conv_layers: int = 1

    def config(
        self, input_size: int, num_classes: int, sequence_length: int, max_epochs: int, batch_size: int
    ) -> LSTMConfig:
        return validate_lstm_config(
            {
                "architecture": {"input_size": input_size, "hidden_size": 32, "num_layers": 1, "bidirectional": True,
                                 "dropout": 0.0, "attention_dim": 32, "conv_channels": self.conv_channels,
                                 "conv_kernel": 7, "conv_layers": self.conv_layers},
                "classifier": {"hidden_dims": [32], "activation": "relu", "dropout": 0.3, "num_classes": num_classes},
                # batch norm on the pooled vector, as in the product config: it rescales the small differences
                # between castings that attention pooling over long sequences starts from (layer norm left
                # OSULeaf's training loss flat at ln 6 for 20 epochs; batch norm: 0.86, validation 0.72)
                "normalization": {"batch_norm": True, "layer_norm": False, "input_norm": True},
                "regularization": {"weight_decay": 1e-3, "gradient_clip": 1.0},
                "training": {"batch_size": batch_size, "learning_rate": self.learning_rate, "num_epochs": max_epochs,
                             "early_stopping_patience": max(15, max_epochs // 4), "lr_schedule": "cosine",
                             "class_weighting": True},
                "data_processing": {"sequence_length": sequence_length, "normalization": "z_score", "padding": "zero"},
            }
        )  # fmt: skip


def default_candidates() -> list[Candidate]:
    return [
        Candidate("conv3+bilstm lr=0.003", 3e-3, 32, 3),
        Candidate("conv1+bilstm lr=0.003", 3e-3, 32, 1),
        Candidate("bilstm lr=0.003", 3e-3, 0),
        Candidate("conv3+bilstm lr=0.001", 1e-3, 32, 3),
    ]


def batch_size_for(n_train: int) -> int:
    """Small sets take small batches: enough optimiser steps per epoch."""
    return 8 if n_train < 100 else 16 if n_train < 1000 else 32


def epochs_for(n_train: int, batch_size: int, target_steps: int = 2000) -> int:
    """About ``target_steps`` optimiser steps, between 30 and 300 epochs."""
    steps = -(-n_train // batch_size)
    return int(min(max(-(-target_steps // steps), 30), 300))


@dataclass
class SearchResult:
    model: SteelDefectLSTM  # the final model (refitted when asked), eval mode
    config: LSTMConfig
    chosen: str
    trials: list[dict[str, Any]]
    val_probs: np.ndarray  # the chosen search run's validation probabilities (threshold, reports)
    history: list[dict[str, float]]
    summary: dict[str, Any] = field(default_factory=dict)


def _at_best(history: list[dict[str, float]], best_epoch: int, key: str) -> float:
    return next((row[key] for row in history if row["epoch"] == best_epoch), float("nan"))


def run_search(
    train: tuple[Sequence[np.ndarray], np.ndarray],
    val: tuple[Sequence[np.ndarray], np.ndarray],
    *,
    num_classes: int,
    seed: int = 0,
    budget_s: float = 900.0,
    max_epochs: int | None = None,
    refit: bool = True,
    candidates: Sequence[Candidate] | None = None,
    progress: bool = True,
    report: Callable[[str], None] = print,
) -> SearchResult:
    """Train each candidate on ``train``, early-stopped on ``val``; return the best (see the module doc)."""
    candidates = list(candidates or default_candidates())
    train_ds = CastingSequenceDataset(list(train[0]), train[1])
    val_ds = CastingSequenceDataset(list(val[0]), val[1])
    input_size = int(train_ds.sequences[0].shape[1])
    seq_len = int(max(train_ds.lengths.max(), val_ds.lengths.max()))
    batch_size = batch_size_for(len(train_ds))
    max_epochs = max_epochs or epochs_for(len(train_ds), batch_size)
    cap_s = budget_s / 2 if budget_s > 0 else None  # no one candidate may eat the whole budget
    started = time.perf_counter()
    trials: list[dict[str, Any]] = []
    best: tuple[tuple[float, float], int] | None = None
    kept: dict[int, tuple[SteelDefectLSTM, LSTMConfig, np.ndarray, list[dict[str, float]]]] = {}
    report(
        f"search: {len(candidates)} candidates, budget {budget_s:.0f} s (each at most "
        f"{'-' if cap_s is None else f'{cap_s:.0f}'} s), up to {max_epochs} epochs of batch {batch_size} each "
        f"(early stopping on the validation split: {len(train_ds)} train / {len(val_ds)} validation castings)"
    )
    for i, cand in enumerate(candidates):
        spent = time.perf_counter() - started
        if i > 0 and spent >= budget_s:
            trials.append({"candidate": cand.name, "skipped": f"budget spent ({spent:.0f} s >= {budget_s:.0f} s)"})
            report(f"  {cand.name:<24} skipped: budget spent")
            continue
        config = cand.config(input_size, num_classes, seq_len, max_epochs, batch_size)
        set_seed(seed)
        model = SteelDefectLSTM(config)
        model.fit_normalization(train_ds.sequences)
        result = fit(
            model, train_ds, val_ds, config.training, config.regularization, seed=seed, progress=progress,
            max_seconds=cap_s, tie_break_loss=True,
        )  # fmt: skip
        val_loss = _at_best(result.history, result.best_epoch, "val_loss")
        val_score = _at_best(result.history, result.best_epoch, "val_accuracy" if num_classes > 1 else "val_auc_pr")
        trials.append({
            "candidate": cand.name, "val_score": val_score, "val_loss": val_loss,
            "best_epoch": result.best_epoch, "epochs_run": len(result.history),
            "seconds": round(result.train_seconds, 1),
        })  # fmt: skip
        report(
            f"  {cand.name:<24} val {'accuracy' if num_classes > 1 else 'AUC-PR'} {val_score:.4f}  "
            f"val loss {val_loss:.4f}  best epoch {result.best_epoch}/{len(result.history)}  "
            f"{result.train_seconds:.0f} s"
        )
        key = (round(result.best_score, 6), -val_loss)  # best_score already carries the loss tie-break
        if best is None or key > best[0]:
            best = (key, i)
            kept = {i: (model, config, predict_dataset(model, val_ds), result.history)}
    assert best is not None
    index = best[1]
    model, config, val_probs, history = kept[index]
    chosen = candidates[index]
    best_epoch = trials[index]["best_epoch"]
    report(f"chosen: {chosen.name} (best validation score; search took {time.perf_counter() - started:.0f} s)")
    refit_info: dict[str, Any] = {"done": False}
    if refit:
        model, refit_info = _refit(chosen, config, train_ds, val_ds, best_epoch, seed, progress)
        report(f"refit on train + validation ({refit_info['castings']} castings) for {best_epoch} epochs: "
               f"{refit_info['seconds']:.0f} s")  # fmt: skip
    summary = {
        "candidates": [c.name for c in candidates],
        "chosen": chosen.name,
        "budget_s": budget_s,
        "search_seconds": round(time.perf_counter() - started, 1),
        "max_epochs": max_epochs,
        "batch_size": batch_size,
        "candidate_cap_s": cap_s,
        "refit": refit_info,
        "selection": "validation AUC-PR (binary) / accuracy (multi-class), then lower validation loss",
    }
    return SearchResult(model.eval(), config, chosen.name, trials, val_probs, history, summary)


def _refit(
    cand: Candidate,
    config: LSTMConfig,
    train_ds: CastingSequenceDataset,
    val_ds: CastingSequenceDataset,
    epochs: int,
    seed: int,
    progress: bool,
) -> tuple[SteelDefectLSTM, dict[str, Any]]:
    """Retrain the chosen candidate on train + validation for a fixed number of epochs (no early stopping)."""
    all_ds = CastingSequenceDataset(
        train_ds.sequences + val_ds.sequences, np.concatenate([train_ds.labels, val_ds.labels])
    )
    cfg = copy.deepcopy(config)
    cfg.training.num_epochs = max(int(epochs), 1)
    cfg.training.early_stopping_patience = cfg.training.num_epochs + 1
    set_seed(seed)
    model = SteelDefectLSTM(cfg)
    model.fit_normalization(all_ds.sequences)
    # fit() needs a validation set; here it is the training data itself (patience > epochs: no early stop),
    # so the plateau schedule and the kept weights follow the training fit
    result = fit(model, all_ds, all_ds, cfg.training, cfg.regularization, seed=seed, progress=progress)
    return model, {"done": True, "epochs": cfg.training.num_epochs, "castings": len(all_ds),
                   "seconds": round(result.train_seconds, 1), "candidate": cand.name}  # fmt: skip
