"""Where the data comes from: a saved dataset file or the synthetic generator, and fixed splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from models.dataset import CastingSequenceDataset
from models.synthetic import SyntheticCastings, generate_castings, load_dataset

__all__ = ["DataSource", "Splits", "load_source", "split_dataset", "to_dataset"]


@dataclass(frozen=True)
class DataSource:
    """Either ``path`` (an NPZ written by ``models.synthetic.save_dataset``) or ``synthetic_n`` castings."""

    path: str | None = None
    synthetic_n: int | None = None
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        return {"path": self.path, "synthetic_n": self.synthetic_n, "seed": self.seed}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DataSource:
        return cls(raw.get("path"), raw.get("synthetic_n"), int(raw.get("seed", 0)))


def load_source(source: DataSource) -> SyntheticCastings:
    if (source.path is None) == (source.synthetic_n is None):
        raise ValueError("give exactly one of a data path or a synthetic size")
    if source.path is not None:
        return load_dataset(Path(source.path))
    return generate_castings(int(source.synthetic_n), seed=source.seed)


@dataclass
class Splits:
    train: SyntheticCastings
    val: SyntheticCastings
    test: SyntheticCastings
    indices: dict[str, np.ndarray]


def split_dataset(
    data: SyntheticCastings, val_fraction: float = 0.15, test_fraction: float = 0.25, seed: int = 0
) -> Splits:
    """Stratified train/validation/test split, deterministic from ``seed``."""
    idx = np.arange(len(data))
    strat = data.labels if np.bincount(data.labels).min() >= 2 else None
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=strat)
    strat_rest = data.labels[rest] if strat is not None else None
    train, val = train_test_split(
        rest, test_size=val_fraction / (1 - test_fraction), random_state=seed + 1, stratify=strat_rest
    )
    train, val, test = np.sort(train), np.sort(val), np.sort(test)
    return Splits(data.subset(train), data.subset(val), data.subset(test), {"train": train, "val": val, "test": test})


def to_dataset(data: SyntheticCastings, max_length: int | None = None) -> CastingSequenceDataset:
    return CastingSequenceDataset(data.sequences, data.labels, max_length=max_length)
