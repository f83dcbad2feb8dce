"""Variable-length casting sequences as a torch ``Dataset`` plus padding/bucketing helpers."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

__all__ = ["CastingSequenceDataset", "LengthBucketSampler", "collate_padded", "pad_sequences"]


def pad_sequences(sequences: Sequence[np.ndarray], max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Zero-pad ``[T_i, C]`` arrays to ``(B, T_max, C)`` float32; returns (padded, lengths int64)."""
    lengths = np.array([len(s) for s in sequences], dtype=np.int64)
    t_max = int(lengths.max()) if max_len is None else max_len
    channels = sequences[0].shape[1]
    out = np.zeros((len(sequences), t_max, channels), dtype=np.float32)
    for i, s in enumerate(sequences):
        n = min(len(s), t_max)
        out[i, :n] = s[:n]
    return out, np.minimum(lengths, t_max)


ItemFormat = Literal["with_length", "pair"]


class CastingSequenceDataset(Dataset):
    """Castings of different lengths with one label each.

    ``sequences`` is a list of ``[T_i, C]`` arrays or a padded ``(N, T, C)`` array; for the padded form
    ``sequence_lengths`` gives the valid steps of each row (default: all). Sequences longer than
    ``max_length`` are cut to their last ``max_length`` steps (the end of a casting matters most).

    ``item_format`` chooses what ``ds[i]`` returns:

    * ``"with_length"`` (default; what ``collate_padded``, ``fit`` and ``predict_dataset`` take):
      ``(sequence float32 array [T_i, C], length int, label)``, the sequence without padding;
    * ``"pair"`` (the original design's items): ``(sequence, label)`` float32 tensors, the sequence
      zero-padded to the dataset's longest one ``[T_max, C]`` so torch's default collate stacks a batch.
      The valid steps of item ``i`` are ``ds.lengths[i]``.
    """

    def __init__(
        self,
        sequences: Sequence[np.ndarray] | np.ndarray,
        labels: Sequence[Any] | np.ndarray,
        sequence_lengths: Sequence[int] | np.ndarray | None = None,
        max_length: int | None = None,
        item_format: ItemFormat = "with_length",
    ) -> None:
        if item_format not in ("with_length", "pair"):
            raise ValueError(f"item_format must be 'with_length' or 'pair', got {item_format!r}")
        if isinstance(sequences, np.ndarray) and sequences.ndim == 3:
            n_rows, t = sequences.shape[:2]
            lengths = np.full(n_rows, t) if sequence_lengths is None else np.asarray(sequence_lengths)
            rows = [sequences[i, : int(lengths[i])] for i in range(n_rows)]
        else:
            rows = [np.asarray(s) for s in sequences]
            if sequence_lengths is not None:
                rows = [r[: int(n)] for r, n in zip(rows, sequence_lengths, strict=True)]
        if max_length is not None:
            rows = [r[-max_length:] for r in rows]
        if len(rows) != len(labels):
            raise ValueError(f"{len(rows)} sequences but {len(labels)} labels")
        if any(r.ndim != 2 or len(r) == 0 for r in rows):
            raise ValueError("every sequence must be a non-empty [steps, channels] array")
        self.sequences = [r.astype(np.float32, copy=False) for r in rows]
        self.labels = np.asarray(labels)
        self.lengths = np.array([len(r) for r in rows], dtype=np.int64)
        self.item_format = item_format

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, idx: int) -> tuple[np.ndarray, int, Any] | tuple[torch.Tensor, torch.Tensor]:
        if self.item_format == "pair":
            seq = self.sequences[idx]
            padded = torch.zeros(int(self.lengths.max()), seq.shape[1])  # (T_max, C)
            padded[: len(seq)] = torch.from_numpy(seq)
            return padded, torch.as_tensor(self.labels[idx], dtype=torch.float32)
        return self.sequences[idx], int(self.lengths[idx]), self.labels[idx]

    def get_sequence_stats(self) -> dict[str, Any]:
        """Counts, length distribution and label counts."""
        values, counts = np.unique(self.labels, return_counts=True)
        return {
            "num_sequences": len(self),
            "num_channels": int(self.sequences[0].shape[1]) if len(self) else 0,
            "min_length": int(self.lengths.min()),
            "max_length": int(self.lengths.max()),
            "mean_length": float(self.lengths.mean()),
            "median_length": float(np.median(self.lengths)),
            "std_length": float(self.lengths.std()),
            "label_counts": {str(v.item()): int(c) for v, c in zip(values, counts, strict=True)},
            "positive_rate": float(np.mean(self.labels > 0)),
        }


def collate_padded(batch: list[tuple[np.ndarray, int, Any]]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """List of (sequence, length, label) -> padded (B, T, C), lengths (B,), labels (B,)."""
    seqs, lengths, labels = zip(*batch, strict=True)
    padded, lens = pad_sequences(list(seqs))
    return torch.from_numpy(padded), torch.from_numpy(lens), torch.as_tensor(np.asarray(labels))


class LengthBucketSampler(Sampler[list[int]]):
    """Batches of similar lengths (less padding); batch order shuffled each epoch from ``seed``."""

    def __init__(
        self, lengths: np.ndarray, batch_size: int, shuffle: bool = True, seed: int = 0, jitter_steps: float = 25.0
    ) -> None:
        self.lengths = np.asarray(lengths, dtype=np.float64)
        self.jitter_steps = jitter_steps
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def __iter__(self) -> Iterator[list[int]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        self.epoch += 1
        # sort by jittered length, chunk, then shuffle the chunks; never leave a batch of one
        # (batch norm cannot train on it)
        jitter = rng.uniform(-self.jitter_steps, self.jitter_steps, len(self.lengths)) if self.shuffle else 0.0
        order = np.argsort(self.lengths + jitter, kind="stable")
        batches = [order[i : i + self.batch_size].tolist() for i in range(0, len(order), self.batch_size)]
        if len(batches) > 1 and len(batches[-1]) == 1:
            last = batches.pop()
            batches[-1] += last
        if self.shuffle:
            rng.shuffle(batches)
        yield from batches

    def __len__(self) -> int:
        n = (len(self.lengths) + self.batch_size - 1) // self.batch_size
        return n - 1 if n > 1 and len(self.lengths) % self.batch_size == 1 else n
