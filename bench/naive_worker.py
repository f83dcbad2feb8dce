"""The naive baseline of the ingest benchmark: the real worker, but one Redis round trip per reading.

Same CLI as ``stream-app worker``; only the readings part of `RedisWindowStore.write_ingest` is replaced,
by the obvious implementation that awaits an HSET (+ EXPIRE + ZADD, pipelined into that one round trip)
per reading; seals and discards are written as the worker writes them.

    .venv/bin/python bench/naive_worker.py [--datadir DIR]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stream_app.service.messages import Readings  # noqa: E402
from stream_app.service.redis_window_store import RedisWindowStore  # noqa: E402
from stream_app.service.window_store import IngestWrites  # noqa: E402
from stream_app.service.windows import pack_row  # noqa: E402

_write_ingest = RedisWindowStore.write_ingest


async def write_one_by_one(self: RedisWindowStore, writes: IngestWrites, now: float) -> None:
    await append_one_by_one(self, writes.readings, now)
    await _write_ingest(self, IngestWrites(readings=[], seals=writes.seals, discard=writes.discard), now)


async def append_one_by_one(self: RedisWindowStore, batch: Sequence[Readings], now: float) -> None:
    for message in batch:
        key = self.window_key(message.casting_id)
        for i, row in enumerate(message.rows):
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(key, message.start_step + i, pack_row(row))
            pipe.expire(key, self.ttl_s)
            pipe.zadd(self.open_key, {message.casting_id: now})
            await pipe.execute()


def main() -> None:
    RedisWindowStore.write_ingest = write_one_by_one  # type: ignore[method-assign]
    from stream_app.cli import main as cli_main

    sys.argv = ["stream-app", "worker", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    main()
