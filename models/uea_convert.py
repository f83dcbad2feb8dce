"""Convert the UCR/UEA datasets bundled with sktime into the plant dataset file format.

For each set, ``<out>/<name>/`` gets ``train.parquet`` + ``train_labels.csv``, ``test.parquet`` +
``test_labels.csv`` (the archive's own split) and ``stream.yaml``: a stream config whose
``validation.channels`` name the set's dimensions (``dim_0`` ...), so ``stream-app train/evaluate`` read
it exactly as they read a plant's. Channel limits and length limits come from the training split only
(with a wide margin); they bound what the worker would accept, nothing here is fitted on the test split.

Run: ``python -m models.uea_convert --out runs/uea`` (all five) or name some: ``... GunPoint OSULeaf``.
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import yaml

from models.dataset_file import write_labels, write_readings

__all__ = ["DATASETS", "PUBLISHED_1NN_DTW", "convert", "load_uea"]

#: name -> sktime.datasets loader
DATASETS = {
    "JapaneseVowels": "load_japanese_vowels",
    "BasicMotions": "load_basic_motions",
    "GunPoint": "load_gunpoint",
    "OSULeaf": "load_osuleaf",
    "ArrowHead": "load_arrow_head",
}
#: test accuracy of 1-NN DTW as published in the UCR/UEA archive (the bar a model has to reach)
PUBLISHED_1NN_DTW = {"GunPoint": 0.907, "OSULeaf": 0.591, "ArrowHead": 0.703, "BasicMotions": 0.975,
                     "JapaneseVowels": 0.95}  # fmt: skip


def load_uea(name: str, split: str) -> tuple[list[np.ndarray], list[str]]:
    """(sequences float32 [T_i, C], labels as the archive writes them) of one split."""
    import sktime.datasets

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sktime/pandas deprecation chatter
        x, y = getattr(sktime.datasets, DATASETS[name])(split=split, return_X_y=True)
    seqs = [
        np.stack([np.asarray(x.iloc[i, c], dtype=np.float32) for c in range(x.shape[1])], axis=1) for i in range(len(x))
    ]
    return seqs, [str(v) for v in y]


def convert(name: str, out: Path) -> Path:
    """Write one set's files under ``out/name``; returns that folder."""
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    train, _ = load_uea(name, "train")
    channels = [f"dim_{c}" for c in range(train[0].shape[1])]
    for split in ("train", "test"):
        seqs, labels = load_uea(name, split)
        ids = [f"{name}-{split}-{i:04d}" for i in range(len(seqs))]
        write_readings(folder / f"{split}.parquet", zip(ids, seqs, strict=True), channels)
        write_labels(folder / f"{split}_labels.csv", zip(ids, labels, strict=True))
    stacked = np.concatenate(train)
    lo, hi = stacked.min(axis=0).astype(float), stacked.max(axis=0).astype(float)
    margin = np.maximum(hi - lo, 1.0)
    lengths = [len(s) for s in train]
    config = {
        "validation": {
            "min_steps": 1,
            "max_steps": 2 * max(lengths),
            "channels": [
                {"name": c, "unit": "1", "min": float(lo[j] - margin[j]), "max": float(hi[j] + margin[j])}
                for j, c in enumerate(channels)
            ],
        }
    }
    (folder / "stream.yaml").write_text(
        f"# {name} (UCR/UEA archive, bundled with sktime) as a plant: written by models/uea_convert.py\n"
        + yaml.safe_dump(config, sort_keys=False),
        encoding="utf-8",
    )
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"some of {', '.join(DATASETS)} (default: all five)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in DATASETS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; choose from {list(DATASETS)}")
    for name in args.names or list(DATASETS):
        print(f"{name}: {convert(name, args.out)}")


if __name__ == "__main__":
    main()
