"""Produce castings to the sensor topic, as a casting line would: several strands interleaved.

Messages follow the input contract in `stream_app.service.messages`. Used by `stream-app simulate`, the demo,
the tests and the benchmarks.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stream_app.config import ChannelLimits
from stream_app.errors import SimulationError
from stream_app.tools.progress import progress_bar

#: kafka-python's delivery and blocking deadlines for "wait for the brokers, however long" (24.8 days)
WAIT_FOREVER_MS = 2**31 - 1

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
    strands = max(1, strands)
    queues: list[list[Casting]] = [list(castings[i::strands]) for i in range(strands)]
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


# --------------------------------------------------------------------------- bad input, for demos and drills

def good_row(channels: Sequence[ChannelLimits]) -> list[float]:
    """A valid reading: every channel at the middle of its limits."""
    return [(c.min + c.max) / 2.0 for c in channels]


def bad_messages(
    rng: np.random.Generator, tag: str, channels: Sequence[ChannelLimits]
) -> tuple[bytes, bytes, str]:
    """One malformed record for the configured channel set (key, value, the dead-letter reason it should get)."""
    cid = f"BAD-{tag}"
    row = good_row(channels)
    too_high = [channels[0].max + (channels[0].max - channels[0].min), *row[1:]]
    options = [
        (b'{"type": "reading", "casting_id": ', "malformed_json"),
        (json.dumps({"type": "reading", "casting_id": cid, "step": 1, "values": [*row, row[0]]}).encode(),
         "wrong_channel_count"),
        (json.dumps({"type": "reading", "casting_id": cid, "step": 1, "values": too_high}).encode(), "out_of_limits"),
        (json.dumps({"type": "reading", "casting_id": cid, "step": 1, "values": [math.nan, *row[1:]]}).encode(),
         "non_finite"),  # json writes NaN, as a careless producer would
        (end_message(cid, 200), "unknown_casting"),
    ]
    value, reason = options[int(rng.integers(len(options)))]
    return cid.encode(), value, reason


@dataclass
class SimulationSummary:
    castings: int = 0
    messages: int = 0
    readings: int = 0
    bad_messages: int = 0
    seconds: float = 0.0
    casting_ids: list[str] | None = None


def name_by_strand(castings: Sequence[Casting], prefix: str, strands: int) -> list[Casting]:
    """Ids that say which strand cast them (`<prefix>-S<strand>-<n>`), as `interleave` deals castings
    to strands (casting i to strand i mod strands): the control-room page groups castings by it."""
    strands = max(1, strands)
    return [Casting(f"{prefix}-S{i % strands + 1}-{i:05d}", c.values) for i, c in enumerate(castings)]


def load_castings(
    *, count: int, seed: int, prefix: str, channels: Sequence[ChannelLimits], dataset: str | None = None
) -> list[Casting]:
    """Castings for the configured channel set: from the model's generator (deterministic from `seed`, ids
    `<prefix>-00000`...), from a readings file in the dataset format (`.parquet`/`.csv`, long form, its own
    casting ids: a plant's history played onto a test topic), or from a generator NPZ (`python -m
    models.synthetic`), which must have as many channels."""
    from models.synthetic import SignalChannel, generate_castings, load_dataset

    if dataset and Path(dataset).suffix.lower() in (".parquet", ".csv"):
        from models.dataset_file import read_readings

        ids, sequences = read_readings(dataset, [c.name for c in channels])
        picked = list(zip(ids, sequences, strict=True))[: count or None]
        return [Casting(casting_id, np.asarray(values, dtype=np.float32)) for casting_id, values in picked]
    if dataset:
        data = load_dataset(dataset)
        width = data.sequences[0].shape[1] if len(data) else len(channels)
        if width != len(channels):
            raise SimulationError(f"{dataset} holds {width} channels, the config names {len(channels)}")
    else:
        data = generate_castings(count, seed=seed, channels=[SignalChannel(c.name, c.min, c.max) for c in channels])
    sequences = data.sequences[:count] if count else data.sequences
    return [Casting(f"{prefix}-{i:05d}", np.asarray(seq, dtype=np.float32)) for i, seq in enumerate(sequences)]


def run_simulation(
    cfg,
    castings: list[Casting],
    *,
    strands: int = 4,
    rate_per_s: float | None = None,
    chunk_size: int = 1,
    bad_share: float = 0.0,
    seed: int = 0,
    progress: bool = True,
    stop: threading.Event | None = None,
) -> SimulationSummary:
    """Produce `castings` to `cfg.topics.sensors` with kafka-python; returns what was sent."""
    from kafka import KafkaProducer

    from stream_app.runtime.connections import check_connections, kafka_python_kwargs

    check_connections(cfg, redis=False)  # kafka-python would hide a refused password behind a 30 s timeout
    rng = np.random.default_rng(seed)
    # acks=all (idempotent, retried): a record is sent once it is on min.insync.replicas brokers. While the
    # cluster cannot take writes (too few brokers in sync), sends wait: no delivery or blocking deadline, so a
    # record is never dropped after a timeout; a record the broker refuses for good stops the run (below)
    producer = KafkaProducer(**kafka_python_kwargs(cfg.kafka), linger_ms=10, acks="all",
                             max_request_size=4 * 1024 * 1024, delivery_timeout_ms=WAIT_FOREVER_MS,
                             max_block_ms=WAIT_FOREVER_MS)
    refused: list[BaseException] = []
    limiter = RateLimiter(rate_per_s)
    summary = SimulationSummary(castings=len(castings), casting_ids=[c.casting_id for c in castings])
    total = sum(len(c.values) for c in castings)
    began = time.monotonic()
    with progress_bar("simulate", total, "readings", enabled=progress) as advance:
        for key, value in interleave(castings, strands=strands, chunk_size=chunk_size):
            if stop is not None and stop.is_set():
                break
            producer.send(cfg.topics.sensors, key=key.encode(), value=value).add_errback(refused.append)
            summary.messages += 1
            n_readings = _readings_in(value)
            summary.readings += n_readings
            advance(n_readings)
            limiter.wait()
            if bad_share and rng.random() < bad_share:
                bad_key, bad_value, _ = bad_messages(rng, f"{summary.messages}", cfg.validation.channels)
                producer.send(cfg.topics.sensors, key=bad_key, value=bad_value).add_errback(refused.append)
                summary.bad_messages += 1
    producer.flush()
    producer.close()
    if refused:
        raise SimulationError(f"the broker refused {len(refused)} record(s) of {cfg.topics.sensors}: {refused[0]}")
    summary.seconds = time.monotonic() - began
    return summary


def _readings_in(value: bytes) -> int:
    if value.startswith(b'{"type":"reading"'):
        return 1
    if value.startswith(b'{"type":"readings"'):
        return value.count(b"[") - 1
    return 0
