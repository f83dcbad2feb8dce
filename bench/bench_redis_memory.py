"""Redis bytes per casting, for the capacity model: what one open casting and one scored casting keep.

Writes castings through the service's own `RedisWindowStore` (chunked ingest, the end marker's seal, the
stored prediction with its attention) and asks Redis `MEMORY USAGE key SAMPLES 0` (exact) for each key:
    open casting     its window hash (steps x channels float32 rows) and its member of the `open` zset
    scored casting   its seal hash and its stored outcome (`done`); the window is freed once it is scored
The `open` zset's share is its usage divided by its members. Keys are under a `bench-<uuid>` prefix and
deleted at the end. With --cluster the same runs on the Redis Cluster (`devstack up --redis-cluster`).

    .venv/bin/python bench/bench_redis_memory.py [--steps 280] [--channels 5] [--castings 200] [--cluster]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import delete_redis_prefix, unique_name  # noqa: E402

from stream_app.config import ChannelLimits, load_config  # noqa: E402
from stream_app.runtime.connections import create_redis, create_redis_sync  # noqa: E402
from stream_app.service.messages import Readings  # noqa: E402
from stream_app.service.records import ScoringRequest  # noqa: E402
from stream_app.service.redis_window_store import RedisWindowStore  # noqa: E402
from stream_app.service.scoring_stage import prediction_payload  # noqa: E402
from stream_app.service.window_store import IngestWrites, Seal  # noqa: E402


def config(cluster: bool, channels: int):
    env = {}
    if cluster:
        from stream_app.tools import devstack_redis_cluster as rc

        env = rc.client_env(rc.RedisClusterSettings.from_env())
    names = [ChannelLimits(name=f"ch{i}", unit="u", min=-1e9, max=1e9) for i in range(channels)]
    return load_config(environ=env, app_id=unique_name("bench"), validation={"channels": names})


async def write(cfg, ids: list[str], steps: int, channels: int, chunk: int) -> None:
    client = create_redis(cfg.redis)
    store = RedisWindowStore(client, cfg.redis_prefix, cfg.redis.key_ttl_s)
    rng = np.random.default_rng(0)
    for casting_id in ids:
        rows = rng.normal(100.0, 10.0, size=(steps, channels)).astype(np.float32)
        readings = [Readings(casting_id, s, rows[s:s + chunk]) for s in range(0, steps, chunk)]
        await store.write_ingest(IngestWrites(readings=readings, seals={}, discard=[]), now=time.time())
    await client.aclose()


async def seal_and_score(cfg, ids: list[str], steps: int) -> None:
    client = create_redis(cfg.redis)
    store = RedisWindowStore(client, cfg.redis_prefix, cfg.redis.key_ttl_s)
    seals = {c: Seal(steps, cfg.topics.sensors, i % 4, 1_000_000 + i) for i, c in enumerate(ids)}
    await store.write_ingest(IngestWrites(readings=[], seals=seals, discard=[]), now=time.time())
    rng = np.random.default_rng(1)
    outcomes = []
    for c in ids:
        attention = rng.random(steps)
        request = ScoringRequest(c, steps, time.time(), {"topic": cfg.topics.sensors, "partition": 0, "offset": 0})
        payload = prediction_payload(request, float(rng.random()), attention / attention.sum(), threshold=0.5,
                                     model_version="v1-3f9a0c1d2e4b", gaps_filled=0, batch_size=17, now=time.time())
        outcomes.append((c, b"P" + payload))
    await store.record_outcomes(outcomes)
    await store.free(ids)
    await client.aclose()


def usage(client, key: str) -> int:
    return int(client.memory_usage(key, samples=0) or 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=280)
    parser.add_argument("--channels", type=int, default=5)
    parser.add_argument("--castings", type=int, default=200)
    parser.add_argument("--chunk", type=int, default=10, help="readings per message")
    parser.add_argument("--cluster", action="store_true")
    args = parser.parse_args()
    cfg = config(args.cluster, args.channels)
    ids = [f"MEM-{i:05d}" for i in range(args.castings)]
    client = create_redis_sync(cfg.redis)
    store = RedisWindowStore(None, cfg.redis_prefix, cfg.redis.key_ttl_s)  # key names only
    try:
        asyncio.run(write(cfg, ids, args.steps, args.channels, args.chunk))
        window = statistics.median(usage(client, store.window_key(c)) for c in ids)
        open_share = usage(client, store.open_key) / args.castings
        encoding = client.object("encoding", store.window_key(ids[0]))
        asyncio.run(seal_and_score(cfg, ids, args.steps))
        seal = statistics.median(usage(client, store.seal_key(c)) for c in ids)
        done = statistics.median(usage(client, store.done_key(c)) for c in ids)
        payload = statistics.median(len(client.get(store.done_key(c))) for c in ids)
        where = "Redis Cluster" if args.cluster else "Redis"
        print(f"{where} {client.info('server')['redis_version']}, {args.castings} castings of {args.steps} steps x "
              f"{args.channels} channels (float32 rows, {args.chunk} per message); MEMORY USAGE, median per casting:")
        print(f"  open casting:   window hash {window:,.0f} B ({encoding}) + open zset member {open_share:,.0f} B "
              f"= {window + open_share:,.0f} B")
        print(f"  raw rows:       {args.steps * args.channels * 4:,} B ({args.steps} x {args.channels} x 4)")
        print(f"  scored casting: seal hash {seal:,.0f} B + done {done:,.0f} B (prediction payload {payload:,.0f} B) "
              f"= {seal + done:,.0f} B, kept for redis.key_ttl_s ({cfg.redis.key_ttl_s} s)")
        print(f"  during scoring: {window + open_share + seal + done:,.0f} B at most (window, seal and done at once)")
    finally:
        deleted = delete_redis_prefix(cfg)
        client.close()
        print(f"deleted {deleted} keys")


if __name__ == "__main__":
    main()
