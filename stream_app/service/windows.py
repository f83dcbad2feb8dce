"""Turn the buffered rows of one casting into the (n_steps, channels) window the model scores.

Missing steps inside the window are filled by the configured policy and counted; a window with
too many gaps, or with steps beyond its end marker, is rejected.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from stream_app.config import WindowConfig
from stream_app.errors import RejectedInput

ROW_DTYPE = np.dtype("<f4")


def pack_row(row: np.ndarray) -> bytes:
    return row.astype(ROW_DTYPE, copy=False).tobytes()


def assemble_window(
    runs: Mapping[int, bytes], n_steps: int, n_channels: int, cfg: WindowConfig
) -> tuple[np.ndarray, int]:
    """Return (window float32 (n_steps, n_channels), number of filled steps).

    `runs` is what the window store holds: first step -> that step's packed row followed by the rows of
    the steps after it (one run per message: one row for a single reading, 50 for a chunk of 50). Runs may
    overlap (a reading re-sent in another chunking); a step held twice counts once."""
    if not runs:
        raise RejectedInput("unknown_casting", "no buffered readings")
    values = np.frombuffer(b"".join(runs.values()), dtype=ROW_DTYPE).reshape(-1, n_channels)
    row_bytes = ROW_DTYPE.itemsize * n_channels
    lengths = np.fromiter((len(run) // row_bytes for run in runs.values()), dtype=np.int64, count=len(runs))
    starts = np.fromiter(runs.keys(), dtype=np.int64, count=len(runs))
    if len(values) == len(runs):  # single readings: one row per run
        steps = starts
    else:  # step of row i = its run's first step + i's place in the run
        first_row = np.cumsum(lengths) - lengths
        steps = np.repeat(starts - first_row, lengths) + np.arange(len(values))
    beyond = steps[steps >= n_steps]
    if len(beyond):
        raise RejectedInput(
            "length_mismatch", f"{len(np.unique(beyond))} buffered step(s) >= n_steps {n_steps}, first {beyond.min()}"
        )
    if len(values) != len(runs):  # sorted, one row per step where runs overlap
        steps, first = np.unique(steps, return_index=True)
        values = values[first]
    missing = n_steps - len(steps)
    if missing / n_steps > cfg.max_gap_share:
        raise RejectedInput(
            "too_many_gaps", f"{missing} of {n_steps} steps missing (> {cfg.max_gap_share:.1%})"
        )
    window = np.empty((n_steps, n_channels), dtype=np.float32)
    if missing == 0:
        window[steps] = values
        return window, 0
    order = np.argsort(steps)
    steps, values = steps[order], values[order]
    if cfg.gap_fill == "linear":
        grid = np.arange(n_steps)
        for c in range(n_channels):  # np.interp holds the end values flat outside the known steps
            window[:, c] = np.interp(grid, steps, values[:, c])
    else:  # ffill: each missing step takes the last known step; leading gaps take the first known
        index = np.searchsorted(steps, np.arange(n_steps), side="right") - 1
        window[:] = values[np.maximum(index, 0)]
    return window, missing
