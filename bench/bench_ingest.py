"""Ingest benchmark: readings/s from the sensor topic into Redis, worker against its ceilings, one run.

For each message shape (single readings, chunks of 10, chunks of 50) the same pre-produced topic is
consumed, in turn and repeatedly, by
    (a) a bare aiokafka consumer that only drains the topic (the Kafka client's ceiling),
    (b) a minimal aiokafka loop: same parser, same pipelined window-store writes (`IngestStage`), no framework,
    the real worker (`stream-app worker`, a subprocess, its own consumer group),
    a naive worker (the real worker with one Redis round trip per reading, bench/naive_worker.py),
    with --peer, the peer a plant would write instead: Quix Streams writing windows to Redis through a
    BatchingSink, and Quix Streams keeping them in its RocksDB state (bench/peer_quix.py, run from its own
    environment `.venv-quix`, made by `make bench-peer-env`).
The topics hold readings only (no end markers), so the scoring agent stays idle and only ingest is timed.
Rates are taken from the first record handled to the last (worker: from its readings counter), so
process start-up and the group join are not counted. Each round runs all four back to back;
ratios are per round, and the table shows medians over rounds.

    .venv/bin/python bench/bench_ingest.py [--rounds 3] [--chunks 1 10 50] [--peer] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from itertools import chain
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import (  # noqa: E402
    ROOT,
    bench_config,
    bench_worker,
    create_topics,
    delete_redis_prefix,
    delete_topics,
    machine_line,
    median,
    produce,
    unique_name,
    write_checkpoint,
    write_doc_block,
)

from stream_app.runtime.heap import settle_heap  # noqa: E402

PEER_PYTHON = ROOT / ".venv-quix" / "bin" / "python"
PEERS = ("quix-redis", "quix-rocksdb")
STEPS_PER_CASTING = 300
DEFAULT_READINGS = {1: 150_000, 10: 300_000, 50: 1_000_000}
NOMINAL = np.array([1.2, 1520.0, 150.0, 200.0, 25.0], dtype=np.float32)
SPREAD = np.array([0.05, 5.0, 3.0, 5.0, 2.0], dtype=np.float32)


def sensor_messages(n_readings: int, chunk: int, prefix: str, seed: int = 0) -> list[tuple[bytes, bytes]]:
    """Readings of castings of STEPS_PER_CASTING steps, 4 strands interleaved, no end markers."""
    from stream_app.tools.simulate import Casting, interleave

    rng = np.random.default_rng(seed)
    n_castings = max(1, n_readings // STEPS_PER_CASTING)
    castings = [
        Casting(f"{prefix}-{i:05d}", NOMINAL + SPREAD * rng.standard_normal((STEPS_PER_CASTING, 5)).astype(np.float32))
        for i in range(n_castings)
    ]
    return [(k.encode(), v) for k, v in interleave(castings, strands=4, chunk_size=chunk)
            if not v.startswith(b'{"type":"end"')]


async def _consumer(cfg, **extra):
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from stream_app.runtime.connections import aiokafka_kwargs

    consumer = AIOKafkaConsumer(**aiokafka_kwargs(cfg.kafka), group_id=None, enable_auto_commit=False,
                                auto_offset_reset="earliest", **extra)
    await consumer.start()
    tps = [TopicPartition(cfg.topics.sensors, p) for p in range(cfg.topics.partitions)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    end = await consumer.end_offsets(tps)
    return consumer, end


async def drain_bare(cfg) -> tuple[int, float]:
    """(a): getmany until every partition is at its end offset; returns (records, seconds)."""
    consumer, end = await _consumer(cfg)
    try:
        count, first = 0, None
        target = sum(end.values())
        while count < target:
            batches = await consumer.getmany(timeout_ms=1000)
            n = sum(len(b) for b in batches.values())
            if n and first is None:
                first = time.perf_counter()
            count += n
        return count, time.perf_counter() - first
    finally:
        await consumer.stop()


async def loop_pipelined(cfg, take: int) -> tuple[int, float]:
    """(b): aiokafka getmany -> the worker's parser and pipelined Redis writes; returns (readings, seconds)."""
    from stream_app.runtime.connections import create_redis
    from stream_app.service.ingest_stage import IngestStage
    from stream_app.service.messages import MessageParser
    from stream_app.service.redis_window_store import RedisWindowStore

    redis = create_redis(cfg.redis)
    stage = IngestStage(MessageParser(cfg.validation), RedisWindowStore(redis, cfg.redis_prefix, cfg.redis.key_ttl_s))
    consumer, end = await _consumer(cfg)
    try:
        count, readings, first = 0, 0, None
        target = sum(end.values())
        while count < target:
            batches = await consumer.getmany(timeout_ms=1000, max_records=take)
            records = list(chain.from_iterable(batches.values()))  # as the worker: aiokafka records as they are
            if not records:
                continue
            if first is None:
                first = time.perf_counter()
            outcome = await stage.process(records, time.time())
            if outcome.deadletters:
                raise RuntimeError(f"unexpected dead letters: {outcome.deadletters[:2]}")
            count += len(records)
            readings += outcome.readings
        return readings, time.perf_counter() - first
    finally:
        await consumer.stop()
        await redis.aclose()


def run_worker(cfg, total_readings: int, *, naive: bool, max_s: float, start_timeout_s: float = 90,
               attach: Callable[[int], AbstractContextManager] | None = None,
               cwd: Path | None = None) -> tuple[int, float]:
    """A worker process on the topic; (readings, seconds) from its first to its last counted reading.
    `attach(pid)`: a context held from the worker's start to the end of the measurement (a profiler);
    `cwd`: where the worker runs, hence whose code it imports (bench_ingest_revisions: a git worktree)."""
    entry = [sys.executable, str(ROOT / "bench" / "naive_worker.py")] if naive else None
    name = "casting_readings_ingested_total"
    with bench_worker(cfg, entry=entry, cwd=cwd) as worker, attach(worker.pid) if attach else nullcontext():
        deadline = time.monotonic() + start_timeout_s
        t0 = c0 = None
        t_last = c_last = None
        while True:
            worker.check_alive()
            value = worker.metric(name)
            now = time.perf_counter()
            if value:
                if t0 is None:
                    t0, c0 = now, value
                t_last, c_last = now, value
                if value >= total_readings or now - t0 > max_s:
                    break
            elif time.monotonic() > deadline:
                raise RuntimeError(f"worker ingested nothing within {start_timeout_s}s:\n{worker.log_tail()}")
            time.sleep(0.05)
    if t_last == t0:
        raise RuntimeError("worker finished within one poll; use more readings")
    return int(c_last - c0), t_last - t0


def run_peer(cfg, variant: str, n_messages: int, timeout_s: float = 180) -> tuple[int, float]:
    """The Quix Streams peer on the topic, in its own process and environment; (readings, seconds)."""
    cmd = [str(PEER_PYTHON), str(ROOT / "bench" / "peer_quix.py"), "--variant", variant,
           "--topic", cfg.topics.sensors, "--messages", str(n_messages),
           "--bootstrap", ",".join(cfg.kafka.bootstrap_servers), "--redis-url", cfg.redis.url,
           "--prefix", cfg.redis_prefix, "--group", cfg.app_id]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise RuntimeError(f"the Quix peer ({variant}) failed:\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result["messages"] != n_messages:
        raise RuntimeError(f"the Quix peer ({variant}) handled {result['messages']} of {n_messages} records")
    return int(result["readings"]), float(result["seconds"])


def shape_label(chunk: int) -> str:
    return "single reading" if chunk == 1 else f"chunk of {chunk}"


def markdown_table(rows: list[dict], rounds: int) -> list[str]:
    lines = [f"readings/s, medians of {rounds} round(s):", "",
             "| message | (a) bare | (b) loop | worker | naive worker | worker/(b) | worker/(a) | worker/naive |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for row in rows:
        naive = f"{row['naive']:,.0f}" if "naive" in row else "-"
        over_naive = f"{row['worker_over_naive']:.1f}" if "worker_over_naive" in row else "-"
        lines.append(f"| {shape_label(row['chunk'])} | {row['bare']:,.0f} | {row['loop']:,.0f} | {row['worker']:,.0f} "
                     f"| {naive} | **{row['worker_over_loop']:.2f}** | {row['worker_over_bare']:.2f} | {over_naive} |")
    per_round = [f"{shape_label(row['chunk'])} " + ", ".join(f"{r['worker'] / r['loop']:.2f}" for r in row["rounds"])
                 for row in rows]
    return [*lines, "", "worker/(b) per round: " + "; ".join(per_round) + "."]


def peer_table(rows: list[dict], rounds: int) -> list[str]:
    """The worker and its ceiling beside the Quix Streams peer, ratios to the faster peer variant per round."""
    lines = [f"readings/s, medians of {rounds} round(s); ratios per round against the faster Quix variant:", "",
             "| message | worker | ceiling (b) | Quix + Redis sink | Quix + RocksDB state | worker / faster Quix | "
             "ceiling / faster Quix |", "|---|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for row in rows:
        lines.append(f"| {shape_label(row['chunk'])} | {row['worker']:,.0f} | {row['loop']:,.0f} | "
                     f"{row['quix-redis']:,.0f} | {row['quix-rocksdb']:,.0f} | **{row['worker_over_peer']:.2f}** | "
                     f"{row['loop_over_peer']:.2f} |")  # fmt: skip
    return lines


def on_redis(cfg, cluster: bool):
    """`cfg` with its Redis on the local Redis Cluster when `cluster` (three masters, one seed node)."""
    if not cluster:
        return cfg
    from stream_app.tools import devstack_redis_cluster as rc

    seed = rc.RedisClusterSettings.from_env().seed_url
    return cfg.model_copy(update={"redis": cfg.redis.model_copy(update={"url": seed, "cluster": True})})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--chunks", type=int, nargs="*", default=[1, 10, 50])
    parser.add_argument("--readings", type=int, nargs="*", default=None,
                        help="readings per chunk size (default 150k / 300k / 1M)")
    parser.add_argument("--max-worker-s", type=float, default=30.0, help="cap on one worker measurement")
    parser.add_argument("--max-naive-s", type=float, default=12.0, help="cap on one naive-worker measurement")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--peer", action="store_true",
                        help="also run the Quix Streams peer, both variants (needs `make bench-peer-env`)")
    parser.add_argument("--redis-cluster", action="store_true",
                        help="Redis is the local Redis Cluster (`stream-app devstack up --redis-cluster`)")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--doc", action="store_true", help="also write the table into docs/BENCHMARKS.md")
    args = parser.parse_args(argv)
    readings_for = dict(zip(args.chunks, args.readings, strict=True)) if args.readings else DEFAULT_READINGS
    if args.peer and not PEER_PYTHON.exists():
        parser.error(f"--peer runs the Quix Streams peer from {PEER_PYTHON.parent.parent.name}; make it with "
                     "`make bench-peer-env`")

    run_id = unique_name("ingest")
    tmp = Path(tempfile.mkdtemp(prefix=f"{run_id}-"))
    checkpoint = write_checkpoint("lightweight", tmp)
    rows = []
    workers = [("worker", False, args.max_worker_s)] + ([] if args.no_naive else [("naive", True, args.max_naive_s)])
    print(machine_line())
    settle_heap()  # as the worker does once started, so that loop (b), run in this process, stays its ceiling
    try:
        for chunk in args.chunks:
            cfg = on_redis(bench_config(f"{run_id}-c{chunk}", checkpoint), args.redis_cluster)
            create_topics(cfg)
            messages = sensor_messages(readings_for[chunk], chunk, f"B{chunk}")
            total = readings_for[chunk] // STEPS_PER_CASTING * STEPS_PER_CASTING
            began = time.perf_counter()
            produce(cfg, messages)
            print(f"chunk {chunk}: produced {len(messages)} messages ({total} readings) "
                  f"in {time.perf_counter() - began:.1f}s", flush=True)
            per_round = []
            for r in range(args.rounds):
                result = {}
                n, s = asyncio.run(drain_bare(cfg))
                result["bare"] = n * chunk / s
                rcfg = cfg.model_copy(update={"app_id": f"{cfg.app_id}-loop{r}"})
                n, s = asyncio.run(loop_pipelined(rcfg, cfg.batching.ingest_take_size))
                delete_redis_prefix(rcfg)
                result["loop"] = n / s
                for role, naive, max_s in workers:
                    wcfg = cfg.model_copy(update={"app_id": f"{cfg.app_id}-{role}{r}"})
                    try:
                        n, s = run_worker(wcfg, total, naive=naive, max_s=max_s)
                    finally:
                        delete_redis_prefix(wcfg)
                    result[role] = n / s
                for role in PEERS if args.peer else ():
                    pcfg = cfg.model_copy(update={"app_id": f"{cfg.app_id}-{role}{r}"})
                    try:
                        n, s = run_peer(pcfg, role.removeprefix("quix-"), len(messages))
                    finally:
                        delete_redis_prefix(pcfg)
                    result[role] = n / s
                print(f"  round {r}: " + "  ".join(f"{k} {v:,.0f}/s" for k, v in result.items()), flush=True)
                per_round.append(result)
            row = {"chunk": chunk, "readings": total, "messages": len(messages), "rounds": per_round}
            for r in per_round:  # a naive worker that did not finish one batch within --max-naive-s has no rate
                if not r.get("naive"):
                    r.pop("naive", None)
            for key in ("bare", "loop", "worker", "naive", *PEERS):
                if any(key in r for r in per_round):
                    row[key] = median(r[key] for r in per_round if key in r)
            row["worker_over_loop"] = median(r["worker"] / r["loop"] for r in per_round)
            row["worker_over_bare"] = median(r["worker"] / r["bare"] for r in per_round)
            if any("naive" in r for r in per_round):
                row["worker_over_naive"] = median(r["worker"] / r["naive"] for r in per_round if "naive" in r)
            if args.peer:
                for who in ("worker", "loop"):
                    row[f"{who}_over_peer"] = median(r[who] / max(r[p] for p in PEERS) for r in per_round)
            rows.append(row)
    finally:
        for chunk in args.chunks:
            delete_topics(bench_config(f"{run_id}-c{chunk}", checkpoint), f"{run_id}-c{chunk}")
            for r in range(args.rounds):
                for role in ("loop", "worker", "naive", *PEERS):
                    delete_redis_prefix(on_redis(bench_config(f"{run_id}-c{chunk}-{role}{r}", checkpoint),
                                                 args.redis_cluster))

    print(f"\ningest readings/s, medians of {args.rounds} round(s); (a) bare aiokafka drain, "
          "(b) aiokafka + parser + pipelined Redis")
    header = (f"{'msg':<10}{'(a) bare':>12}{'(b) loop':>12}{'worker':>10}{'naive':>9}"
              f"{'w/(b)':>8}{'w/(a)':>8}{'w/naive':>9}")
    print(header)
    print("-" * len(header))
    for row in rows:
        label = "single" if row["chunk"] == 1 else f"chunk {row['chunk']}"
        naive = f"{row['naive']:>9,.0f}" if "naive" in row else f"{'-':>9}"
        ratio = f"{row['worker_over_naive']:>9.1f}" if "worker_over_naive" in row else f"{'-':>9}"
        print(f"{label:<10}{row['bare']:>12,.0f}{row['loop']:>12,.0f}{row['worker']:>10,.0f}{naive}"
              f"{row['worker_over_loop']:>8.2f}{row['worker_over_bare']:>8.2f}{ratio}")
    if args.peer:
        print("\n" + "\n".join(peer_table(rows, args.rounds)))
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine_line(), "rows": rows}, indent=2) + "\n")
    if args.doc:
        write_doc_block("ingest-peer" if args.peer else "ingest",
                        peer_table(rows, args.rounds) if args.peer else markdown_table(rows, args.rounds), argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
