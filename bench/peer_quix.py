"""The peer a plant would write instead of this worker: the same sensor topic ingested with Quix Streams.

Runs in its own environment (`make bench-peer-env` makes `.venv-quix`: Quix Streams 3.28.1 pins
pydantic < 2.14, the project's environment has 2.14), so it imports nothing from this project.
`bench/bench_ingest.py --peer` starts it as a subprocess on the topic it measures the worker on.

Two variants, as a plant's data team would write them:
  redis    windows appended to one Redis list per casting (``<prefix>:win:<casting_id>``, float32 bytes
           per reading) through a Quix `BatchingSink`: one pipelined round trip per batch, flushed at
           each checkpoint, offsets committed after the flush;
  rocksdb  Quix's own state: the list of readings per casting in RocksDB, its changelog topic in Kafka.
Neither validates beyond what JSON parsing does (no channel count or limit checks, no dead letters, no
id checks, no seals), which is what makes it a peer and not a twin: said beside the figures.

Prints one JSON line: {"readings": N, "messages": M, "seconds": S}, S from the first record handled
to the end of the final checkpoint (the last flush / state commit), start-up and group join not counted.

    .venv-quix/bin/python bench/peer_quix.py --variant redis --topic T --messages M --prefix P --group G
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from array import array


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", choices=["redis", "rocksdb"], required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--messages", type=int, required=True, help="stop after this many records")
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--prefix", required=True, help="Redis key prefix (redis variant)")
    parser.add_argument("--group", required=True, help="consumer group (also names the changelog topic)")
    parser.add_argument("--timeout-s", type=float, default=120.0, help="give up when idle this long")
    args = parser.parse_args()

    from quixstreams import Application

    state_dir = tempfile.mkdtemp(prefix="quix-state-")
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=state_dir,
        loglevel="WARNING",
    )
    topic = app.topic(args.topic, value_deserializer="json", key_deserializer="str")
    sdf = app.dataframe(topic)
    seen = {"messages": 0, "readings": 0, "first": 0.0}

    def count(value: dict) -> None:
        if not seen["messages"]:
            seen["first"] = time.perf_counter()
        seen["messages"] += 1
        seen["readings"] += 1 if value["type"] == "reading" else len(value["values"])
        if seen["messages"] >= args.messages:
            app.stop()  # the loop ends after this record; the final checkpoint still commits

    sdf = sdf.update(count)
    if args.variant == "redis":
        sdf.sink(_window_sink(args.redis_url, args.prefix))
    else:
        sdf.update(_append_to_state, stateful=True)
    app.run(timeout=args.timeout_s)
    seconds = time.perf_counter() - seen["first"]
    print(json.dumps({"readings": seen["readings"], "messages": seen["messages"], "seconds": seconds}))


def _rows(value: dict) -> list[list[float]]:
    return [value["values"]] if value["type"] == "reading" else value["values"]


def _append_to_state(value: dict, state) -> None:
    window = state.get("window", [])
    window.extend(_rows(value))
    state.set("window", window)


def _window_sink(url: str, prefix: str):
    import redis
    from quixstreams.sinks import BatchingSink, SinkBatch

    class WindowSink(BatchingSink):
        def __init__(self) -> None:
            super().__init__()
            self.client = redis.Redis.from_url(url)

        def write(self, batch: SinkBatch) -> None:
            pipe = self.client.pipeline(transaction=False)
            for item in batch:
                value = item.value
                pipe.rpush(f"{prefix}:win:{value['casting_id']}", *(array("f", row).tobytes() for row in _rows(value)))
            pipe.execute()

    return WindowSink()


if __name__ == "__main__":
    main()
