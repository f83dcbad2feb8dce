"""Produce castings to the sensor topic, as a casting line would: several strands interleaved.

Messages follow the input contract in `stream_app.messages`. Used by `stream-app simulate`, the demo,
the tests and the benchmarks.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


def reading_message(casting_id: str, step: int, row: Sequence[float]) -> bytes:
    return json.dumps(
        {"type": "reading", "casting_id": casting_id, "step": step, "values": [float(v) for v in row]},
        separators=(",", ":"),
    ).encode()


def chunk_message(casting_id: str, start_step: int, rows: np.ndarray) -> bytes:
    return json.dumps(
        {"type": "readings", "casting_id": casting_id, "start_step": start_step,
         "values": np.asarray(rows, dtype=np.float32).tolist()},
        separators=(",", ":"),
    ).encode()


def end_message(casting_id: str, n_steps: int) -> bytes:
    return json.dumps({"type": "end", "casting_id": casting_id, "n_steps": n_steps}, separators=(",", ":")).encode()


def casting_messages(casting_id: str, values: np.ndarray, chunk_size: int = 1) -> Iterator[bytes]:
    """Readings (single, or chunks of `chunk_size`) then the end marker."""
    values = np.asarray(values, dtype=np.float32)
    n = len(values)
    if chunk_size <= 1:
        for step in range(n):
            yield reading_message(casting_id, step, values[step].tolist())
    else:
        for start in range(0, n, chunk_size):
            yield chunk_message(casting_id, start, values[start : start + chunk_size])
    yield end_message(casting_id, n)


@dataclass(frozen=True)
class Casting:
    casting_id: str
    values: np.ndarray  # (n_steps, channels), raw units


def interleave(
    castings: Sequence[Casting], strands: int, chunk_size: int = 1
) -> Iterator[tuple[str, bytes]]:
    """(key, message) in the order a line with `strands` parallel strands would emit them.

    Each strand casts one casting after another; strands advance one message at a time in turn,
    so messages of up to `strands` castings are interleaved while each casting stays in order.
    """
    queues: list[list[Casting]] = [list(castings[i::strands]) for i in range(max(1, strands))]
    active: list[Iterator[bytes] | None] = [None] * len(queues)
    keys: list[str] = [""] * len(queues)
    while True:
        progressed = False
        for s, queue in enumerate(queues):
            if active[s] is None and queue:
                casting = queue.pop(0)
                active[s] = casting_messages(casting.casting_id, casting.values, chunk_size)
                keys[s] = casting.casting_id
            iterator = active[s]
            if iterator is None:
                continue
            message = next(iterator, None)
            if message is None:
                active[s] = None
                continue
            progressed = True
            yield keys[s], message
        if not progressed and not any(queues):
            return


class RateLimiter:
    """Sleeps so that `count` events take at least count / rate seconds (None: as fast as possible)."""

    def __init__(self, rate_per_s: float | None) -> None:
        self.rate = rate_per_s
        self.start = time.monotonic()
        self.count = 0

    def wait(self, n: int = 1) -> None:
        self.count += n
        if not self.rate:
            return
        ahead = self.count / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)
