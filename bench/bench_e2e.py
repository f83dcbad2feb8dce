"""End-to-end benchmark: castings/s through one worker, and end-marker -> prediction latency under load.

1. Maximum rate: once the worker answers, castings are produced as fast as the producer goes; castings/s
   is taken between the first and the last prediction's broker timestamps (start-up is not counted).
2. The same worker then gets castings at 25 %, 50 % and 90 % of that rate (messages spread evenly,
   strands interleaved, as the simulator sends them) for a fixed time each. Latency = prediction's
   broker timestamp - the moment the producer sent the casting's end marker (one clock, this machine);
   the service's own `latency_ms` (end marker consumed -> prediction produced) is shown beside it.
The worker runs with the configured batching (max_batch_size, max_wait_ms), CPU, torch threads 1,
precision auto (float64 on CPU), and the default model variant (untrained weights unless
checkpoints/default/model.pt exists).

    .venv/bin/python bench/bench_e2e.py [--chunk 10] [--backlog 800] [--phase-s 15] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import (  # noqa: E402
    bench_config,
    bench_worker,
    create_topics,
    delete_redis_prefix,
    delete_topics,
    machine_line,
    produce,
    unique_name,
    write_checkpoint,
    write_doc_block,
)


def make_castings(n: int, seed: int, prefix: str):
    from models.synthetic import generate_castings
    from stream_app.tools.simulate import Casting

    data = generate_castings(n, seed=seed)
    return [Casting(f"{prefix}-{i:05d}", np.asarray(v, dtype=np.float32)) for i, v in enumerate(data.sequences)]


class PredictionReader:
    """Reads the prediction topic from the beginning in a thread: casting id -> (broker ts s, latency_ms)."""

    def __init__(self, cfg) -> None:
        from kafka import KafkaConsumer, TopicPartition

        from stream_app.runtime.connections import kafka_python_kwargs

        self.consumer = KafkaConsumer(**kafka_python_kwargs(cfg.kafka), enable_auto_commit=False,
                                      auto_offset_reset="earliest")
        self.consumer.assign([TopicPartition(cfg.topics.predictions, p) for p in range(cfg.topics.partitions)])
        self.seen: dict[str, tuple[float, float, int]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            for records in self.consumer.poll(timeout_ms=200).values():
                for r in records:
                    doc = json.loads(r.value)
                    with self.lock:
                        self.seen.setdefault(doc["casting_id"], (r.timestamp / 1000.0, doc["latency_ms"],
                                                                 doc["batch_size"]))

    def count(self, ids) -> int:
        with self.lock:
            return sum(1 for i in ids if i in self.seen)

    def get(self, ids) -> list[tuple[float, float, int]]:
        with self.lock:
            return [self.seen[i] for i in ids if i in self.seen]

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
        self.consumer.close()


def produce_paced(cfg, castings, chunk: int, castings_per_s: float) -> dict[str, float]:
    """Send castings at the given rate (messages evenly spaced); returns end-marker send times by casting."""
    from kafka import KafkaProducer

    from stream_app.runtime.connections import kafka_python_kwargs
    from stream_app.tools.simulate import RateLimiter, interleave

    messages = list(interleave(castings, strands=4, chunk_size=chunk))
    per_casting = len(messages) / len(castings)
    limiter = RateLimiter(castings_per_s * per_casting)
    producer = KafkaProducer(**kafka_python_kwargs(cfg.kafka), linger_ms=2, acks=1)
    sent_end: dict[str, float] = {}
    try:
        for key, value in messages:
            producer.send(cfg.topics.sensors, key=key.encode(), value=value)
            if value.startswith(b'{"type":"end"'):
                sent_end[key] = time.time()
            limiter.wait()
        producer.flush()
    finally:
        producer.close()
    return sent_end


def wait_all(reader, worker, ids, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        worker.check_alive()
        if reader.count(ids) == len(ids):
            return True
        time.sleep(0.2)
    return False


def main(argv: list[str] | None = None) -> int:
    from stream_app.tools.simulate import interleave

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=10, help="readings per message")
    parser.add_argument("--backlog", type=int, default=1000, help="castings for the maximum-rate phase")
    parser.add_argument("--phase-s", type=float, default=12.0, help="seconds of load per rate")
    parser.add_argument("--fractions", type=float, nargs="*", default=[0.25, 0.5, 0.9])
    parser.add_argument("--variant", default="default")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--doc", action="store_true", help="also write the table into docs/BENCHMARKS.md")
    args = parser.parse_args(argv)

    run_id = unique_name("e2e")
    tmp = Path(tempfile.mkdtemp(prefix=f"{run_id}-"))
    cfg = bench_config(run_id, write_checkpoint(args.variant, tmp))
    print(machine_line())
    print(f"model {args.variant}, batching max_batch_size={cfg.batching.max_batch_size} "
          f"max_wait_ms={cfg.batching.max_wait_ms:g}, ingest take {cfg.batching.ingest_take_size}, "
          f"chunk {args.chunk} readings/message, CPU, torch threads 1, precision auto (float64)")
    create_topics(cfg)
    reader = None
    phases = []
    try:
        reader = PredictionReader(cfg)
        with bench_worker(cfg) as worker:
            warm = make_castings(4, seed=0, prefix="WARM")
            produce(cfg, ((k.encode(), v) for k, v in interleave(warm, strands=4, chunk_size=args.chunk)))
            if not wait_all(reader, worker, [c.casting_id for c in warm], timeout_s=120):
                raise RuntimeError(f"worker did not answer:\n{worker.log_tail()}")
            # as fast as the producer goes, while the worker runs: producer, broker and worker share the CPU,
            # as they do in the paced phases below
            backlog = make_castings(args.backlog, seed=1, prefix="MAX")
            produce(cfg, ((k.encode(), v) for k, v in interleave(backlog, strands=4, chunk_size=args.chunk)))
            ids = [c.casting_id for c in backlog]
            if not wait_all(reader, worker, ids, timeout_s=240):
                raise RuntimeError(f"backlog not scored: {reader.count(ids)}/{len(ids)}\n{worker.log_tail()}")
            stamps = sorted(ts for ts, _, _ in reader.get(ids))
            max_rate = (len(stamps) - 1) / (stamps[-1] - stamps[0])
            batches = [b for _, _, b in reader.get(ids)]
            print(f"maximum: {max_rate:.1f} castings/s ({len(ids)} castings, mean batch {np.mean(batches):.1f})",
                  flush=True)
            for k, fraction in enumerate(args.fractions):
                rate = fraction * max_rate
                castings = make_castings(max(8, int(rate * args.phase_s)), seed=100 + k, prefix=f"R{k}")
                sent_end = produce_paced(cfg, castings, args.chunk, rate)
                ids = [c.casting_id for c in castings]
                if not wait_all(reader, worker, ids, timeout_s=120):
                    raise RuntimeError(f"phase {fraction}: {reader.count(ids)}/{len(ids)} scored")
                with reader.lock:
                    got = {i: reader.seen[i] for i in ids}
                e2e_ms = np.array([1000 * (got[i][0] - sent_end[i]) for i in ids])
                svc_ms = np.array([got[i][1] for i in ids])
                stamps = sorted(v[0] for v in got.values())
                phase = {
                    "fraction": fraction, "target_per_s": rate, "castings": len(ids),
                    "achieved_per_s": (len(stamps) - 1) / (stamps[-1] - stamps[0]),
                    "p50_ms": float(np.percentile(e2e_ms, 50)), "p99_ms": float(np.percentile(e2e_ms, 99)),
                    "svc_p50_ms": float(np.percentile(svc_ms, 50)), "svc_p99_ms": float(np.percentile(svc_ms, 99)),
                    "mean_batch": float(np.mean([got[i][2] for i in ids])),
                }
                phases.append(phase)
                print(f"  {fraction:.0%}: {phase}", flush=True)
    finally:
        if reader is not None:
            reader.close()
        delete_topics(cfg, run_id)
        delete_redis_prefix(cfg)

    print(f"\nend to end, one worker: maximum {max_rate:.1f} castings/s")
    header = (f"{'load':>6}{'target/s':>10}{'got/s':>9}{'castings':>10}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'svc p50':>9}{'svc p99':>9}{'batch':>7}")
    print(header)
    print("-" * len(header))
    for p in phases:
        print(f"{p['fraction']:>6.0%}{p['target_per_s']:>10.1f}{p['achieved_per_s']:>9.1f}{p['castings']:>10}"
              f"{p['p50_ms']:>9.1f}{p['p99_ms']:>9.1f}{p['svc_p50_ms']:>9.1f}{p['svc_p99_ms']:>9.1f}"
              f"{p['mean_batch']:>7.1f}")
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine_line(), "max_per_s": max_rate, "phases": phases,
                                         "chunk": args.chunk, "batching": cfg.batching.model_dump()}, indent=2) + "\n")
    if args.doc:
        lines = [f"**Maximum: {max_rate:.1f} castings/s** (mean scoring batch {np.mean(batches):.1f} at that rate).",
                 "", "| load | target castings/s | achieved | castings | p50 ms | p99 ms | svc p50 ms | svc p99 ms "
                 "| mean batch |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        lines += [f"| {p['fraction']:.0%} | {p['target_per_s']:.1f} | {p['achieved_per_s']:.1f} | {p['castings']} | "
                  f"{p['p50_ms']:.0f} | {p['p99_ms']:.0f} | {p['svc_p50_ms']:.0f} | {p['svc_p99_ms']:.0f} | "
                  f"{p['mean_batch']:.1f} |" for p in phases]
        write_doc_block("e2e", lines, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
