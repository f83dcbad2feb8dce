"""Chaos run: a steady stream of castings while Redis, the broker and workers are killed at random.

A tool, not a CI test. For `--minutes`, a producer sends castings at `--rate` castings/s (chunks of
10 readings, strands interleaved, as the simulator does) to `--workers` workers of one group, while a
fault is injected every 10-40 s (seeded):

    redis       SIGKILL Redis, start it again 1-8 s later (its append-only file keeps what it acknowledged)
    kafka       SIGKILL the broker, start it again 1-8 s later
    worker      SIGKILL one worker, start it again 0-5 s later
    sigterm     SIGTERM one worker (it must exit 0 within shutdown_grace_s), start it again

Then the producer stops, the tool waits until every casting sent has a prediction or a dead letter
(or `--drain-s` passes), and reconciles every casting sent against both topics:

    castings sent / scored / dead-lettered by reason / lost (must be 0)
    duplicates with different bytes (must be 0), identical duplicates (allowed: at-least-once)
    probabilities that differ from an undisturbed offline run of the same model (must be 0)
    faults injected by kind, worker exits nobody asked for, the longest unready stretch of /health

Uses the local stack (`stream-app devstack`, started if needed), its own topics and app id, the
shipped model on CPU. Exit code 0 only if nothing was lost and no duplicate differs.

    .venv/bin/python bench/chaos.py --minutes 10 [--rate 4] [--workers 2] [--seed 1] [--doc]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import (  # noqa: E402
    bench_config,
    bench_worker,
    create_topics,
    delete_redis_prefix,
    delete_topics,
    unique_name,
    write_doc_block,
)

from stream_app.tools import devstack  # noqa: E402
from stream_app.tools.simulate import Casting, RateLimiter, interleave  # noqa: E402
from stream_app.tools.worker_process import WorkerProcess  # noqa: E402

FAULTS = ("redis", "kafka", "worker", "sigterm")


class Ledger:
    """What the producer sent: per casting, whether every one of its messages was acknowledged."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.unsent: Counter = Counter()  # casting id -> messages not yet handed to the producer
        self.pending: Counter = Counter()  # casting id -> messages handed over, not yet acknowledged
        self.failed: set[str] = set()
        self.values: dict[str, np.ndarray] = {}

    def complete(self) -> list[str]:
        with self.lock:
            return [c for c in self.values if not self.unsent[c] and not self.pending[c] and c not in self.failed]


def produce_steadily(cfg, ledger: Ledger, rate: float, stop: threading.Event, seed: int) -> None:
    """Castings at `rate` per second until `stop`; each message's delivery is tracked in the ledger."""
    from kafka import KafkaProducer

    from models.synthetic import generate_castings
    from stream_app.runtime.connections import kafka_python_kwargs

    # one request in flight and generous retries: a casting's messages stay in order across broker restarts
    producer = KafkaProducer(**kafka_python_kwargs(cfg.kafka), acks="all", linger_ms=5, retries=1_000_000,
                             max_in_flight_requests_per_connection=1, delivery_timeout_ms=600_000,
                             request_timeout_ms=10_000, max_block_ms=600_000)
    block, n = 0, 0
    try:
        while not stop.is_set():
            data = generate_castings(24, seed=seed * 1000 + block)
            castings = [Casting(f"CH-{block:04d}-{i:02d}", seq) for i, seq in enumerate(data.sequences)]
            block += 1
            messages = list(interleave(castings, strands=6, chunk_size=10))
            limiter = RateLimiter(rate * len(messages) / len(castings))
            with ledger.lock:
                for c in castings:
                    ledger.values[c.casting_id] = c.values
                ledger.unsent.update(key for key, _ in messages)
            for key, value in messages:
                if stop.is_set():
                    break
                limiter.wait()
                with ledger.lock:
                    ledger.unsent[key] -= 1
                    ledger.pending[key] += 1
                future = producer.send(cfg.topics.sensors, key=key.encode(), value=value)
                future.add_callback(_acked, ledger, key)
                future.add_errback(_failed, ledger, key)
                n += 1
    finally:
        # castings cut off by the stop stay unsent in part: they are left out of the reconciliation
        producer.flush(timeout=600)
        producer.close(timeout=60)
        print(f"producer: {n} messages sent", flush=True)


def _acked(ledger: Ledger, key: str, _metadata) -> None:  # kafka-python appends the result
    with ledger.lock:
        ledger.pending[key] -= 1


def _failed(ledger: Ledger, key: str, exc) -> None:
    with ledger.lock:
        ledger.failed.add(key)
    print(f"producer: a message of {key} was not delivered: {exc}", flush=True)


class Chaos:
    def __init__(self, settings, workers: list[WorkerProcess], rng: random.Random) -> None:
        self.settings = settings
        self.workers = workers
        self.rng = rng
        self.injected: Counter = Counter()
        self.sigterm_codes: list[int | None] = []
        self.log: list[str] = []

    def inject(self) -> None:
        kind = self.rng.choice(FAULTS)
        began = time.monotonic()
        if kind in ("redis", "kafka"):
            down_s = self.rng.uniform(1, 8)
            devstack.kill(self.settings, kind)
            time.sleep(down_s)
            devstack.up(self.settings)
            what = f"{kind} down {time.monotonic() - began:.1f}s"
        else:
            worker = self.rng.choice(self.workers)
            if kind == "worker":
                worker.kill(signal.SIGKILL)
                time.sleep(self.rng.uniform(0, 5))
            else:
                self.sigterm_codes.append(worker.kill(signal.SIGTERM))
                if self.sigterm_codes[-1] != 0:
                    print(f"SIGTERM: worker exited with {self.sigterm_codes[-1]}:\n{worker.log_tail(1500)}", flush=True)
                if self.sigterm_codes[-1] is None:  # did not stop: record it, then make sure
                    worker.kill(signal.SIGKILL)
            worker.start()
            what = f"{kind} on worker {self.workers.index(worker)}"
        self.injected[kind] += 1
        self.log.append(what)
        print(f"fault: {what}", flush=True)


class ReadinessWatch(threading.Thread):
    """Polls every worker's /health; remembers the longest stretch a running worker was not ready."""

    def __init__(self, workers: list[WorkerProcess]) -> None:
        super().__init__(daemon=True)
        self.workers = workers
        self.stop = threading.Event()
        self.longest_s = 0.0
        self.unexpected_exits = 0

    def run(self) -> None:
        since: dict[int, float | None] = defaultdict(lambda: None)
        while not self.stop.is_set():
            now = time.monotonic()
            for i, worker in enumerate(self.workers):
                if worker.alive() and not worker.ready():
                    since[i] = since[i] or now
                    self.longest_s = max(self.longest_s, now - since[i])
                else:
                    since[i] = None
            time.sleep(0.5)


def read_topic(cfg, topic: str) -> list:
    from kafka import KafkaConsumer, TopicPartition

    from stream_app.runtime.connections import kafka_python_kwargs

    consumer = KafkaConsumer(**kafka_python_kwargs(cfg.kafka), enable_auto_commit=False)
    try:
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(tps)
        consumer.seek_to_beginning()
        end = consumer.end_offsets(tps)
        records = []
        while any(consumer.position(tp) < end[tp] for tp in tps):
            for batch in consumer.poll(timeout_ms=1000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def offline_probabilities(checkpoint: Path, windows: dict[str, np.ndarray]) -> dict[str, float]:
    from stream_app.service.model_runner import Scorer

    scorer = Scorer.from_checkpoint(checkpoint, "cpu")
    out = {}
    ids = list(windows)
    for i in range(0, len(ids), 64):
        chunk = ids[i : i + 64]
        for casting_id, score in zip(chunk, scorer.score([windows[c] for c in chunk]), strict=True):
            out[casting_id] = score.probability
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=4.0, help="castings per second")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--drain-s", type=float, default=300.0, help="longest wait for the last outcomes")
    parser.add_argument("--doc", action="store_true", help="write the table into docs/BENCHMARKS.md")
    args = parser.parse_args(argv)

    from models.checkpoint import DEFAULT_CHECKPOINT

    settings = devstack.DevstackSettings.from_env()
    devstack.up(settings)
    app_id = unique_name("chaos")
    cfg = bench_config(app_id, DEFAULT_CHECKPOINT, partitions=4)
    create_topics(cfg)
    rng = random.Random(args.seed)
    cfg = cfg.model_copy(update={"resilience": cfg.resilience.model_copy(update={"shutdown_grace_s": 20.0})})
    workers = [bench_worker(cfg) for _ in range(args.workers)]
    ledger = Ledger()
    stop = threading.Event()
    watch = ReadinessWatch(workers)
    chaos = Chaos(settings, workers, rng)
    try:
        for worker in workers:
            worker.start()
        deadline = time.monotonic() + 120
        while not all(w.ready() for w in workers):
            if time.monotonic() > deadline:
                raise RuntimeError("workers did not become ready:\n" + workers[0].log_tail())
            time.sleep(0.5)
        watch.start()
        producer = threading.Thread(target=produce_steadily, args=(cfg, ledger, args.rate, stop, args.seed),
                                    daemon=True)
        producer.start()
        began = time.monotonic()
        end = began + args.minutes * 60
        while time.monotonic() < end:
            time.sleep(min(rng.uniform(10, 40), max(0.0, end - time.monotonic())))
            if time.monotonic() < end - 5:
                chaos.inject()
            for worker in workers:  # a worker that died on its own is a finding; bring it back and count it
                if not worker.alive():
                    watch.unexpected_exits += 1
                    print(f"worker exited unasked:\n{worker.log_tail(1500)}", flush=True)
                    worker.start()
        stop.set()
        producer.join(timeout=900)
        devstack.up(settings)  # whatever the last fault left down
        sent = set(ledger.complete())
        print(f"stream stopped after {(time.monotonic() - began) / 60:.1f} min; draining {len(sent)} castings",
              flush=True)

        drain_end = time.monotonic() + args.drain_s
        while True:
            predictions = read_topic(cfg, cfg.topics.predictions)
            letters = read_topic(cfg, cfg.topics.deadletter)
            decided = {r.key.decode() for r in predictions} | {json.loads(r.value)["casting_id"] for r in letters
                                                                if json.loads(r.value)["casting_id"]}
            if sent <= decided or time.monotonic() > drain_end:
                break
            time.sleep(5)
        watch.stop.set()
        lines = reconcile(cfg, sent, ledger, predictions, letters, chaos, watch, args)
        for line in lines:
            print(line)
        if args.doc:
            write_doc_block("chaos", lines, None)
        lost = next(int(line.split("|")[2]) for line in lines if line.startswith("| lost"))
        differing = next(int(line.split("|")[2]) for line in lines if line.startswith("| duplicates with different"))
        return 0 if lost == 0 and differing == 0 else 1
    finally:
        stop.set()
        watch.stop.set()
        for worker in workers:
            worker.close()
        devstack.up(settings)
        delete_topics(cfg, app_id)
        delete_redis_prefix(cfg)


def reconcile(cfg, sent: set[str], ledger: Ledger, predictions, letters, chaos: Chaos, watch: ReadinessWatch,
              args) -> list[str]:
    payloads: dict[str, set[bytes]] = defaultdict(set)
    copies: Counter = Counter()
    for record in predictions:
        casting_id = record.key.decode()
        payloads[casting_id].add(record.value)
        copies[casting_id] += 1
    scored = set(payloads) & sent
    letter_reasons: dict[str, set[str]] = defaultdict(set)
    for record in letters:
        doc = json.loads(record.value)
        if doc["casting_id"] in sent:
            letter_reasons[doc["casting_id"]].add(doc["reason"])
    dead = {c for c in letter_reasons if c not in scored}
    by_reason = Counter(reason for c in dead for reason in letter_reasons[c])
    lost = sent - scored - dead
    differing = [c for c, p in payloads.items() if len(p) > 1]
    identical = sum(n - 1 for c, n in copies.items() if len(payloads[c]) == 1)

    from models.checkpoint import DEFAULT_CHECKPOINT

    reference = offline_probabilities(DEFAULT_CHECKPOINT, {c: ledger.values[c] for c in scored})
    mismatched = [c for c in scored
                  if abs(json.loads(next(iter(payloads[c])))["defect_probability"] - reference[c]) > 1e-6]
    faults = ", ".join(f"{kind} {chaos.injected[kind]}" for kind in FAULTS)
    sigterm_ok = sum(code == 0 for code in chaos.sigterm_codes)
    rows = [
        ("minutes of stream, rate", f"{args.minutes:g} min at {args.rate:g} castings/s, {args.workers} workers"),
        ("castings sent (all messages acked)", len(sent)),
        ("scored", len(scored)),
        ("dead-lettered", len(dead)),
        *[(f"  {reason}", count) for reason, count in sorted(by_reason.items())],
        ("lost", len(lost)),
        ("duplicates with different bytes", len(differing)),
        ("identical duplicates (at-least-once)", identical),
        ("probabilities off the offline reference", len(mismatched)),
        ("faults injected", f"{sum(chaos.injected.values())}: {faults}"),
        ("SIGTERM exits with code 0", f"{sigterm_ok} of {len(chaos.sigterm_codes)}"),
        ("worker exits nobody asked for", watch.unexpected_exits),
        ("longest unready stretch (/health)", f"{watch.longest_s:.1f} s"),
        ("castings cut off by the stop or undelivered by the producer", len(ledger.values) - len(sent)),
    ]
    lines = ["| | |", "|---|---|", *[f"| {name} | {value} |" for name, value in rows]]
    if lost:
        lines.append(f"lost castings (first 10): {sorted(lost)[:10]}")
    if differing:
        lines.append(f"differing duplicates (first 10): {sorted(differing)[:10]}")
    return lines


if __name__ == "__main__":
    sys.exit(main())
