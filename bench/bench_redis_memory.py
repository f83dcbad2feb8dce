"""Redis memory per casting, open and after scoring: an input of the capacity model (docs/SCALING.md).

Runs the worker's own stages on the local Redis (`make services`): `IngestStage` buffers castings of a
given length as the worker does (readings in chunks of 10, no end marker: the castings stay open), then
end markers seal them and `ScoringStage` scores them with the default checkpoint, which stores each
casting's outcome (the prediction JSON with its attention weights) and frees its window. For each
length it reports Redis's `used_memory` growth per casting (keys, the open-castings set and allocator
overhead included) and `MEMORY USAGE` of one casting's keys, while open and after scoring (the outcome
and the seal stay `redis.key_ttl_s`, 24 h by default, so that a re-delivered end marker re-sends the
same bytes). A benchmark, not a test: it asserts nothing.

    .venv/bin/python bench/bench_redis_memory.py [--castings 500] [--lengths 100 300 500] [--doc]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_config, delete_redis_prefix, unique_name, write_checkpoint, write_doc_block  # noqa: E402

from stream_app.runtime.connections import create_redis, create_redis_sync  # noqa: E402
from stream_app.service.ingest_stage import IngestStage  # noqa: E402
from stream_app.service.messages import MessageParser  # noqa: E402
from stream_app.service.model_runner import load_scorer  # noqa: E402
from stream_app.service.records import SourceRecord  # noqa: E402
from stream_app.service.redis_window_store import RedisWindowStore  # noqa: E402
from stream_app.service.scoring_stage import ScoringStage  # noqa: E402
from stream_app.tools.simulate import casting_messages, end_message  # noqa: E402


def records(cfg, casting_id: str, values, with_end: bool, offset: int) -> list[SourceRecord]:
    messages = list(casting_messages(casting_id, values, chunk_size=10))
    messages = messages if with_end else messages[:-1]
    return [SourceRecord(cfg.topics.sensors, 0, offset + i, casting_id.encode(), m) for i, m in enumerate(messages)]


def used_memory(sync) -> int:
    return int(sync.info("memory")["used_memory"])


def key_bytes(sync, keys: list[str]) -> int:
    return sum(sync.memory_usage(k, samples=0) or 0 for k in keys)


async def measure(cfg, scorer, length: int, castings: int) -> dict:
    from models.synthetic import generate_castings

    sync = create_redis_sync(cfg.redis)
    client = create_redis(cfg.redis)
    store = RedisWindowStore(client, cfg.redis_prefix, cfg.redis.key_ttl_s)
    ingest = IngestStage(MessageParser(cfg.validation), store)
    scoring = ScoringStage(store, scorer, cfg.window, scorer.threshold(cfg.model.threshold), 64)
    import numpy as np

    # the generator's castings, cut or repeated to `length` steps (their values stay within the limits)
    data = [np.resize(s, (length, s.shape[1])) for s in generate_castings(castings, seed=length).sequences]
    ids = [f"MEM-{length}-{i:05d}" for i in range(len(data))]
    try:
        before = used_memory(sync)
        offset = 0
        for casting_id, values in zip(ids, data, strict=True):
            batch = records(cfg, casting_id, values, with_end=False, offset=offset)
            offset += len(batch)
            await ingest.process(batch, time.time())
        opened = used_memory(sync)
        one_open = key_bytes(sync, [store.window_key(ids[0])])
        ends = [SourceRecord(cfg.topics.sensors, 0, offset + i, c.encode(), end_message(c, length))
                for i, c in enumerate(ids)]
        outcome = await ingest.process(ends, time.time())
        for i in range(0, len(outcome.requests), 64):
            scored = await scoring.process(outcome.requests[i : i + 64])
            await scoring.finish(scored)
        scored_memory = used_memory(sync)
        one_done = key_bytes(sync, [store.done_key(ids[0]), store.seal_key(ids[0])])
        return {"length": length, "castings": len(ids), "open_per_casting": (opened - before) / len(ids),
                "open_key": one_open, "scored_per_casting": (scored_memory - before) / len(ids),
                "scored_keys": one_done}
    finally:
        await client.aclose()
        sync.close()
        delete_redis_prefix(cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--castings", type=int, default=500)
    parser.add_argument("--lengths", type=int, nargs="+", default=[100, 300, 500])
    parser.add_argument("--doc", action="store_true",
                        help="write the table into docs/BENCHMARKS.md (block redis-memory)")
    args = parser.parse_args()

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        cfg = bench_config(unique_name("mem"), write_checkpoint("default", Path(tmp)))
        scorer = load_scorer(cfg.model, cfg.validation.channels)
        rows = [asyncio.run(measure(cfg, scorer, n, args.castings)) for n in args.lengths]
        sync = create_redis_sync(cfg.redis)
        server = sync.info("server")["redis_version"], sync.config_get("hash-max-listpack-entries")
        sync.close()
    lines = [
        f"{args.castings} castings per length, {len(cfg.validation.channels)} channels, readings in chunks of 10; "
        f"Redis {server[0]}, hash-max-listpack-entries {server[1].get('hash-max-listpack-entries')}; "
        "bytes per casting:",
        "",
        "| steps | open: used_memory / casting | open: MEMORY USAGE of the window | scored: used_memory / casting "
        "| scored: MEMORY USAGE of outcome + seal |",
        "|---:|---:|---:|---:|---:|",
        *(f"| {r['length']} | {r['open_per_casting']:,.0f} | {r['open_key']:,} | {r['scored_per_casting']:,.0f} "
          f"| {r['scored_keys']:,} |" for r in rows),
    ]
    print("\n".join(lines))
    if args.doc:
        write_doc_block("redis-memory", lines, None)


if __name__ == "__main__":
    main()
