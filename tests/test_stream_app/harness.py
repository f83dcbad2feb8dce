"""Helpers for the streaming tests: worker processes, producing, reading topics, the offline reference."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic

from models.synthetic import generate_castings
from stream_app.config import StreamConfig
from stream_app.runtime.connections import kafka_python_kwargs
from stream_app.tools import worker_process
from stream_app.tools.simulate import Casting, casting_messages, interleave
from stream_app.tools.worker_process import free_port


class WorkerProcess(worker_process.WorkerProcess):
    """The product's worker harness (`stream_app.tools.worker_process`); its failures are test failures."""

    def fail(self, message: str):
        pytest.fail(message)


@dataclass
class RedisServer:
    """A private `redis-server` (AOF, as the devstack runs it) that a fault test may kill and restart."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import redis

        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = (self.data_dir / "redis.log").open("ab")
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", ""],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.RedisError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    log_text = (self.data_dir / "redis.log").read_text()
                    raise RuntimeError(f"redis-server did not start: {log_text}") from None
                time.sleep(0.05)
        client.close()
        return self

    def kill(self) -> None:
        """SIGKILL: no shutdown save; what Redis acknowledged is in its append-only file."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def create_topics(cfg: StreamConfig) -> None:
    admin = KafkaAdminClient(**kafka_python_kwargs(cfg.kafka))
    try:
        admin.create_topics(
            [NewTopic(name, cfg.topics.partitions, 1)
             for name in (cfg.topics.sensors, cfg.topics.predictions, cfg.topics.deadletter)]
        )
    finally:
        admin.close()


def produce(cfg: StreamConfig, messages: Iterable[tuple[bytes | None, bytes]], partition_of=None,
            timestamp_ms: int | None = None) -> int:
    """Send (key, value) pairs; returns how many. Keys choose partitions as in production. `timestamp_ms`:
    every record's timestamp (CreateTime), instead of the producer's clock."""
    producer = KafkaProducer(**kafka_python_kwargs(cfg.kafka), linger_ms=5, max_request_size=4_000_000)
    count = 0
    for key, value in messages:
        partition = partition_of(key) if partition_of else None
        producer.send(cfg.topics.sensors, key=key, value=value, partition=partition, timestamp_ms=timestamp_ms)
        count += 1
    producer.flush()
    producer.close()
    return count


class TopicReader:
    """Reads a topic from the beginning, accumulating records across calls."""

    def __init__(self, cfg: StreamConfig, topic: str) -> None:
        self.consumer = KafkaConsumer(
            **kafka_python_kwargs(cfg.kafka), auto_offset_reset="earliest", enable_auto_commit=False
        )
        partitions = self.consumer.partitions_for_topic(topic) or {0}
        self.consumer.assign([TopicPartition(topic, p) for p in partitions])
        self.consumer.seek_to_beginning()
        self.records: list = []

    def poll(self, timeout_ms: int = 500) -> list:
        batch = [r for records in self.consumer.poll(timeout_ms=timeout_ms).values() for r in records]
        self.records.extend(batch)
        return batch

    def read_until(self, done: Callable[[list], bool], timeout_s: float, check: Callable[[], None] = lambda: None):
        deadline = time.monotonic() + timeout_s
        while not done(self.records) and time.monotonic() < deadline:
            check()
            self.poll()
        return self.records

    def read_distinct_keys(self, count: int, timeout_s: float, *alive: WorkerProcess) -> list:
        """Read until `count` distinct keys arrived; fail at once, with its log, if a worker in `alive` dies."""

        def check() -> None:
            for worker in alive:
                if not worker.alive():
                    pytest.fail(f"worker exited:\n{worker.log_tail()}")

        return self.read_until(lambda records: len({r.key for r in records}) >= count, timeout_s, check)

    def json(self) -> list[dict]:
        return [json.loads(r.value) for r in self.records]

    def close(self) -> None:
        self.consumer.close()


def offline_probabilities(checkpoint: Path, windows: dict[str, np.ndarray]) -> dict[str, float]:
    """The reference: each window alone through the model, no service code involved."""
    import torch

    from models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(checkpoint)
    out = {}
    with torch.no_grad():
        for casting_id, window in windows.items():
            x = torch.from_numpy(np.asarray(window, dtype=np.float32)[None])
            out[casting_id] = float(torch.sigmoid(model(x))[0])
    return out


def make_castings(n: int, seed: int, prefix: str) -> list[Casting]:
    data = generate_castings(n, seed=seed)
    return [Casting(f"{prefix}-{i:04d}", seq) for i, seq in enumerate(data.sequences)]


def produce_castings(cfg, castings: list[Casting], strands: int = 4, chunk_sizes=(1, 10, 50)) -> None:
    """Castings spread over chunk sizes (single readings, chunks of 10 and 50), strands interleaved."""
    messages = []
    for k, chunk in enumerate(chunk_sizes):
        group = castings[k :: len(chunk_sizes)]
        messages.extend(interleave(group, strands=strands, chunk_size=chunk))
    produce(cfg, ((key.encode(), value) for key, value in messages))


def buffered_readings(redis_sync, window_key: str, n_channels: int = 5) -> int:
    """Readings held in a window hash: its fields are runs (a message's first step -> its float32 rows)."""
    return sum(len(run) for run in redis_sync.hvals(window_key)) // (4 * n_channels)


def assert_predictions_match(predictions: list[dict], castings: list[Casting], checkpoint) -> None:
    by_id: dict[str, dict] = {}
    for p in predictions:
        if p["casting_id"] in by_id:  # at-least-once: a duplicate must be identical (timing fields aside)
            first = by_id[p["casting_id"]]
            assert p == first, f"duplicate prediction for {p['casting_id']} differs"
        by_id[p["casting_id"]] = p
    expected_ids = {c.casting_id for c in castings}
    assert set(by_id) == expected_ids, f"missing: {sorted(expected_ids - set(by_id))[:10]}"
    reference = offline_probabilities(checkpoint, {c.casting_id: c.values for c in castings})
    for casting in castings:
        p = by_id[casting.casting_id]
        assert p["n_steps"] == len(casting.values)
        assert abs(p["defect_probability"] - reference[casting.casting_id]) < 1e-5, casting.casting_id
        attention = np.asarray(p["attention"])
        assert attention.shape == (len(casting.values),)
        assert abs(attention.sum() - 1.0) < 1e-4
        assert p["predicted_defect"] == (p["defect_probability"] >= p["threshold"])


def readings_then_ends(castings: list[Casting], chunk_size: int) -> tuple[list, list]:
    """(every casting's readings, then every casting's end marker) as (key, value) pairs: a burst of end
    markers can then be sent once all readings are buffered."""
    readings, ends = [], []
    for casting in castings:
        messages = list(casting_messages(casting.casting_id, casting.values, chunk_size=chunk_size))
        readings.extend((casting.casting_id.encode(), m) for m in messages[:-1])
        ends.append((casting.casting_id.encode(), messages[-1]))
    return readings, ends

