"""The parser alone: `MessageParser.parse` message by message vs `parse_many` over fetch-sized batches.

Same messages as bench_ingest (castings of 300 steps, 4 strands interleaved), batches of 1,000 records
(the ingest loop's take size), rounds alternating the two so the ratio is measured side by side; no
Kafka, no Redis. A benchmark, not a test: it asserts nothing.

    .venv/bin/python bench/bench_parse.py [--rounds 7] [--chunks 1 50]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import sensor_messages  # noqa: E402
from common import machine_line  # noqa: E402

from stream_app.config import load_config  # noqa: E402
from stream_app.service.messages import MessageParser  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--chunks", type=int, nargs="*", default=[1, 50])
    parser.add_argument("--batch", type=int, default=1000)
    args = parser.parse_args()
    message_parser = MessageParser(load_config(environ={}).validation)
    print(machine_line())
    for chunk in args.chunks:
        messages = sensor_messages(60_000 if chunk == 1 else 300_000, chunk, "P")
        batches = [messages[i : i + args.batch] for i in range(0, len(messages), args.batch)]
        readings = len(messages) * chunk
        one, many = [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            for batch in batches:
                for key, value in batch:
                    message_parser.parse(key, value)
            one.append(readings / (time.perf_counter() - started))
            started = time.perf_counter()
            for batch in batches:
                message_parser.parse_many(batch)
            many.append(readings / (time.perf_counter() - started))
        ratios = [m / o for m, o in zip(many, one, strict=True)]
        label = "single readings" if chunk == 1 else f"chunks of {chunk}"
        print(f"{label:<16} parse {statistics.median(one):>11,.0f}/s  parse_many {statistics.median(many):>11,.0f}/s  "
              f"ratio (median of {args.rounds} rounds) {statistics.median(ratios):.2f}x")


if __name__ == "__main__":
    main()
