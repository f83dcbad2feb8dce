"""The training recipe for a plant's own data: a small, time-bounded search, then the final model.

What the synthetic defaults chose by hand (variant, learning rate) the recipe chooses on data held out of
training, never on a test split:

* candidates, in this order: Conv1d front-end of 3 blocks + bi-LSTM at lr 3e-3, 1 block + bi-LSTM at
  3e-3, bi-LSTM alone at 3e-3, 3 blocks + bi-LSTM at 1e-3 (blocks: 32 filters, kernel 7, ReLU; bi-LSTM
  hidden 32, masked attention pooling, batch norm, MLP head [32], AdamW, cosine LR);
* ``folds`` >= 2 (the default, 4): **cross-validation**. Training and validation castings are pooled and
  cut into stratified folds (no more folds than the rarest class has castings). Each candidate trains one
  member per fold, early-stopped on that fold; its score is over the out-of-fold predictions of every
  pooled casting (accuracy for multi-class, AUC-PR for binary; ties broken by the lower out-of-fold log
  loss). The chosen candidate's members, averaged (models/ensemble.py), are the final model: with a few
  dozen castings a single model's result swings with its seed, and a validation hold-out of 9-13
  castings cannot rank candidates (both measured, docs/MODEL.md);
* ``folds`` = 1: one validation hold-out; the best candidate is retrained on train + validation for its
  best epoch count when ``refit``;
* sizes follow the data: batch 8/16/32 (under 100 / under 1000 / more training castings), about 2000
  optimiser steps (30..300 epochs), patience a quarter of that;
* the search stops starting new candidates once ``budget_s`` seconds are spent (the first always runs) and
  stops any one candidate after ``budget_s / 2`` (shared by its folds); what was tried, skipped and
  chosen is printed and stored in the checkpoint;
* the binary decision threshold is the F1-optimal one on the held-out predictions (out-of-fold, or the
  validation hold-out's).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, log_loss
from sklearn.model_selection import StratifiedKFold

from models.config import LSTMConfig, validate_lstm_config
from models.dataset import CastingSequenceDataset
from models.ensemble import AveragedLSTMs
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
    model: SteelDefectLSTM | AveragedLSTMs  # the final model (refitted or averaged), eval mode
    config: LSTMConfig
    chosen: str
    trials: list[dict[str, Any]]
    val_labels: np.ndarray  # the held-out castings' labels: out-of-fold (all pooled) or the validation split
    val_probs: np.ndarray  # the chosen candidate's probabilities on them (threshold, reports)
    history: list[dict[str, float]]  # the (first) training run's epochs, for the learning curves
    summary: dict[str, Any] = field(default_factory=dict)


def _within_budget(
    candidates: Sequence[Candidate], budget_s: float, trials: list[dict[str, Any]], report: Callable[[str], None]
) -> Iterator[tuple[int, Candidate]]:
    """(index, candidate) while the budget lasts; the first always runs, a skipped one is recorded and said."""
    started = time.perf_counter()
    for i, cand in enumerate(candidates):
        spent = time.perf_counter() - started
        if i > 0 and spent >= budget_s:
            trials.append({"candidate": cand.name, "skipped": f"budget spent ({spent:.0f} s >= {budget_s:.0f} s)"})
            report(f"  {cand.name:<24} skipped: budget spent")
            continue
        yield i, cand


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
    folds: int = 4,
    candidates: Sequence[Candidate] | None = None,
    progress: bool = True,
    report: Callable[[str], None] = print,
) -> SearchResult:
    """Choose a candidate and build the final model (see the module doc): by cross-validation over
    ``train`` + ``val`` pooled when ``folds`` >= 2, else trained on ``train`` and early-stopped on ``val``."""
    candidates = list(candidates or default_candidates())
    if folds >= 2:
        pooled = (list(train[0]) + list(val[0]), np.concatenate([train[1], val[1]]))
        return _cross_validated(pooled, num_classes, seed, budget_s, max_epochs, folds, candidates, progress, report)
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
    for i, cand in _within_budget(candidates, budget_s, trials, report):
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
    return SearchResult(model.eval(), config, chosen.name, trials, val_ds.labels, val_probs, history, summary)


def _fold_splits(labels: np.ndarray, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified folds; no more of them than the rarest class has castings (each fold sees every class)."""
    k = max(2, min(folds, int(np.bincount(labels).min())))
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels))


def _held_out_score(labels: np.ndarray, probs: np.ndarray, num_classes: int) -> tuple[float, float]:
    """(accuracy or AUC-PR, log loss) of held-out probabilities."""
    if num_classes > 1:
        rows = probs / probs.sum(axis=1, keepdims=True)  # float32 softmax rows sum to 1 only within ~1e-7
        return float(accuracy_score(labels, probs.argmax(axis=1))), float(log_loss(labels, rows,
                                                                                 labels=range(num_classes)))
    clipped = np.clip(probs, 1e-7, 1 - 1e-7)
    return float(average_precision_score(labels, probs)), float(log_loss(labels, clipped, labels=[0, 1]))


def _cross_validated(
    pooled: tuple[list[np.ndarray], np.ndarray],
    num_classes: int,
    seed: int,
    budget_s: float,
    max_epochs: int | None,
    folds: int,
    candidates: list[Candidate],
    progress: bool,
    report: Callable[[str], None],
) -> SearchResult:
    sequences, labels = pooled
    splits = _fold_splits(labels, folds, seed)
    k = len(splits)
    all_ds = CastingSequenceDataset(sequences, labels)
    input_size = int(all_ds.sequences[0].shape[1])
    seq_len = int(all_ds.lengths.max())
    n_fit = len(splits[0][0])
    batch_size = batch_size_for(n_fit)
    max_epochs = max_epochs or epochs_for(n_fit, batch_size)
    cap_s = budget_s / 2 / k if budget_s > 0 else None  # one candidate's folds share half the budget

    def part(idx: np.ndarray) -> CastingSequenceDataset:
        return CastingSequenceDataset([sequences[i] for i in idx], labels[idx])

    started = time.perf_counter()
    trials: list[dict[str, Any]] = []
    runs: list[_CandidateRun] = []
    report(
        f"search: {len(candidates)} candidates × {k} folds of {len(all_ds)} castings ({n_fit} train / "
        f"{len(all_ds) - n_fit} held out per fold), budget {budget_s:.0f} s, up to {max_epochs} epochs of batch "
        f"{batch_size}; the model averages the fold models of the candidates chosen on the out-of-fold scores"
    )
    for _, cand in _within_budget(candidates, budget_s, trials, report):
        config = cand.config(input_size, num_classes, seq_len, max_epochs, batch_size)
        run = _CandidateRun(cand.name, config, [], np.zeros((len(all_ds), num_classes) if num_classes > 1
                                                           else len(all_ds)), [])  # fmt: skip
        best_epochs: list[int] = []
        seconds = 0.0
        for f, (fit_idx, out_idx) in enumerate(splits):
            set_seed(seed + f)
            model = SteelDefectLSTM(config)
            model.fit_normalization(all_ds.sequences)  # the same input statistics for every member
            result = fit(model, part(fit_idx), part(out_idx), config.training, config.regularization,
                         seed=seed + f, progress=progress, max_seconds=cap_s, tie_break_loss=True)  # fmt: skip
            run.held_out[out_idx] = predict_dataset(model, part(out_idx))
            run.members.append(model.eval())
            run.histories.append(result.history)
            best_epochs.append(int(result.best_epoch))
            seconds += result.train_seconds
        runs.append(run)
        score, loss = _held_out_score(labels, run.held_out, num_classes)
        trials.append({
            "candidate": cand.name, "val_score": score, "val_loss": loss, "folds": k, "best_epochs": best_epochs,
            "epochs_run": [len(h) for h in run.histories], "seconds": round(seconds, 1),
        })  # fmt: skip
        report(
            f"  {cand.name:<24} out-of-fold {'accuracy' if num_classes > 1 else 'AUC-PR'} {score:.4f}  "
            f"log loss {loss:.4f}  best epochs {best_epochs}  {seconds:.0f} s"
        )
    chosen, steps = _select_ensemble([r.held_out for r in runs], labels, num_classes)
    for names, (score, loss) in ((" + ".join(runs[j].name for j in picked), key) for picked, key in steps):
        report(f"  average of {names}: out-of-fold score {score:.4f}, log loss {loss:.4f}")
    held_out = np.mean([runs[j].held_out for j in chosen], axis=0)
    members = [m for j in chosen for m in runs[j].members]
    name = " + ".join(runs[j].name for j in chosen)
    report(f"chosen: {name}, {len(members)} fold models averaged (search took {time.perf_counter() - started:.0f} s)")
    summary = {
        "candidates": [c.name for c in candidates],
        "chosen": name,
        "ensemble": [runs[j].name for j in chosen],
        "folds": k,
        "members": len(members),
        "budget_s": budget_s,
        "search_seconds": round(time.perf_counter() - started, 1),
        "max_epochs": max_epochs,
        "batch_size": batch_size,
        "candidate_cap_s": None if cap_s is None else cap_s * k,
        "refit": {"done": False},
        "selection": "greedy forward selection of candidates on the out-of-fold score of their average: AUC-PR "
        "(binary) / accuracy (multi-class), then lower out-of-fold log loss",
    }
    first = runs[chosen[0]]
    model = AveragedLSTMs(members)
    return SearchResult(model.eval(), first.config, name, trials, labels, held_out, first.histories[0], summary)


@dataclass
class _CandidateRun:
    name: str
    config: LSTMConfig
    members: list[SteelDefectLSTM]  # one per fold, best weights
    held_out: np.ndarray  # out-of-fold probabilities of every pooled casting
    histories: list[list[dict[str, float]]]


def _select_ensemble(
    held_outs: list[np.ndarray], labels: np.ndarray, num_classes: int
) -> tuple[list[int], list[tuple[list[int], tuple[float, float]]]]:
    """Greedy forward selection (Caruana et al., 2004) without replacement: start from the best candidate,
    add the one whose inclusion gives the best out-of-fold (score, -log loss) of the plain average, as
    long as that strictly improves. Returns the chosen indices and each step's (indices, (score, loss))."""

    def key(picked: list[int]) -> tuple[float, float]:
        score, loss = _held_out_score(labels, np.mean([held_outs[j] for j in picked], axis=0), num_classes)
        return round(score, 6), loss

    def rank(k: tuple[float, float]) -> tuple[float, float]:  # higher score, then lower loss
        return k[0], -k[1]

    singles = [key([j]) for j in range(len(held_outs))]
    first = max(range(len(held_outs)), key=lambda j: rank(singles[j]))
    chosen, best = [first], singles[first]
    steps = [(list(chosen), best)]
    while len(chosen) < len(held_outs):
        top_key, top = max(((key(chosen + [j]), j) for j in range(len(held_outs)) if j not in chosen),
                           key=lambda t: rank(t[0]))  # fmt: skip
        if rank(top_key) <= rank(best):
            break
        chosen.append(top)
        best = top_key
        steps.append((list(chosen), best))
    return chosen, steps


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
