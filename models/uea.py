"""Real data no one here wrote: the UEA JapaneseVowels set bundled with sktime, through the same model code.

12 LPC-cepstrum channels, 7..29 steps, 9 speakers; 270 training and 370 test utterances. The model is
``SteelDefectLSTM`` with ``num_classes=9`` trained by ``models.train.fit``. 20% of the training set is
held out (stratified) for early stopping; the test set is scored once at the end.

Run: ``python -m models.uea`` or ``stream-app evaluate --uea JapaneseVowels``.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from models.config import validate_lstm_config
from models.dataset import CastingSequenceDataset
from models.lstm_model import SteelDefectLSTM
from models.metrics import multiclass_metrics
from models.train import fit, predict_dataset, set_seed, torch_threads

__all__ = ["japanese_vowels_config", "load_japanese_vowels", "run_uea"]

log = logging.getLogger(__name__)
TARGET_ACCURACY = 0.95


def load_japanese_vowels() -> tuple[list[np.ndarray], np.ndarray, list[np.ndarray], np.ndarray, list[str]]:
    """(train sequences [T_i, 12], train labels 0..8, test sequences, test labels, class names)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sktime/pandas deprecation chatter
        from sktime.datasets import load_japanese_vowels as _load

        x_train, y_train = _load(split="train", return_X_y=True)
        x_test, y_test = _load(split="test", return_X_y=True)

    def to_arrays(frame) -> list[np.ndarray]:
        return [
            np.stack([np.asarray(frame.iloc[i, c], dtype=np.float32) for c in range(frame.shape[1])], axis=1)
            for i in range(len(frame))
        ]

    classes = sorted(set(y_train) | set(y_test), key=lambda v: (len(str(v)), str(v)))
    index = {c: i for i, c in enumerate(classes)}
    return (
        to_arrays(x_train),
        np.array([index[v] for v in y_train], dtype=np.int64),
        to_arrays(x_test),
        np.array([index[v] for v in y_test], dtype=np.int64),
        [str(c) for c in classes],
    )


def japanese_vowels_config() -> dict[str, Any]:
    return validate_lstm_config(
        {
            "architecture": {"input_size": 12, "hidden_size": 64, "num_layers": 1, "bidirectional": True,
                             "dropout": 0.0, "attention_dim": 32},
            "classifier": {"hidden_dims": [64], "dropout": 0.3, "num_classes": 9},
            "normalization": {"batch_norm": False, "layer_norm": True, "input_norm": True},
            "regularization": {"weight_decay": 1e-3, "gradient_clip": 1.0},
            "training": {"batch_size": 16, "learning_rate": 3e-3, "num_epochs": 60, "early_stopping_patience": 15,
                         "lr_schedule": "plateau", "class_weighting": False},
            "data_processing": {"sequence_length": 29},
        }
    ).to_dict()  # fmt: skip


def run_uea(
    name: str = "JapaneseVowels",
    *,
    seed: int = 0,
    output: str | Path | None = None,
    progress: bool = False,
    num_threads: int | None = 2,
) -> dict[str, Any]:
    """Train on the training split (minus a validation hold-out), report test accuracy."""
    if name != "JapaneseVowels":
        raise ValueError(f"unsupported UEA dataset {name!r}")
    with torch_threads(num_threads):
        return _run_japanese_vowels(seed, output, progress)


def _run_japanese_vowels(seed: int, output: str | Path | None, progress: bool) -> dict[str, Any]:
    x_train, y_train, x_test, y_test, classes = load_japanese_vowels()
    tr_idx, val_idx = train_test_split(np.arange(len(x_train)), test_size=0.2, random_state=seed, stratify=y_train)
    train_ds = CastingSequenceDataset([x_train[i] for i in tr_idx], y_train[tr_idx])
    val_ds = CastingSequenceDataset([x_train[i] for i in val_idx], y_train[val_idx])
    test_ds = CastingSequenceDataset(x_test, y_test)

    config = validate_lstm_config(japanese_vowels_config())
    set_seed(seed)
    model = SteelDefectLSTM(config)
    model.fit_normalization(train_ds.sequences)
    started = time.perf_counter()
    result = fit(model, train_ds, val_ds, config.training, config.regularization, seed=seed, progress=progress)
    seconds = time.perf_counter() - started
    test = multiclass_metrics(y_test, predict_dataset(model, test_ds))
    out = {
        "dataset": "JapaneseVowels",
        "classes": classes,
        "sizes": {"train": len(train_ds), "val": len(val_ds), "test": len(test_ds)},
        "test": test,
        "best_val_accuracy": result.best_score,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "train_seconds": round(seconds, 1),
        "seed": seed,
        "targets": {"accuracy_ge_0.95": test["accuracy"] >= TARGET_ACCURACY},
        "config": config.to_dict(),
    }
    if output is not None:
        Path(output).write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    res = run_uea(seed=args.seed, output=args.output, progress=True)
    print(json.dumps({k: res[k] for k in ("test", "best_epoch", "epochs_run", "train_seconds", "targets")}))
