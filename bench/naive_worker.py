"""The naive baseline of the ingest benchmark: the real worker, but one Redis round trip per reading.

Same CLI as ``stream-app worker``; only `RedisWindowStore.append` is replaced, by the obvious
implementation that awaits an HSET (+ EXPIRE + ZADD, pipelined into that one round trip) per reading.

    .venv/bin/python bench/naive_worker.py [--datadir DIR]
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stream_app.service import window_store  # noqa: E402
from stream_app.service.messages import Readings  # noqa: E402
from stream_app.service.windows import pack_row  # noqa: E402


async def append_one_by_one(self: window_store.RedisWindowStore, batch: Sequence[Readings], now: float) -> None:
    for message in batch:
        key = self.window_key(message.casting_id)
        for i, row in enumerate(message.rows):
            pipe = self.client.pipeline(transaction=False)
            pipe.hset(key, message.start_step + i, pack_row(row))
            pipe.expire(key, self.ttl_s)
            pipe.zadd(self.open_key, {message.casting_id: now})
            await pipe.execute()


def main() -> None:
    window_store.RedisWindowStore.append = append_one_by_one  # type: ignore[method-assign]
    from stream_app.cli import main as cli_main

    sys.argv = ["stream-app", "worker", *sys.argv[1:]]
    cli_main()


if __name__ == "__main__":
    main()
