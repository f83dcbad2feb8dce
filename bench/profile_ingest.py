"""Where ingest time goes: loop (b) of bench_ingest (aiokafka -> the worker's parser -> pipelined Redis
writes) on one message shape, under py-spy, summed by function (self time) and by stage (inclusive).

    .venv-quix/bin/py-spy record -r 250 -f raw -o /tmp/ingest-1.txt -- \\
        .venv/bin/python bench/profile_ingest.py --chunk 1
    .venv/bin/python bench/profile_ingest.py --summarise /tmp/ingest-1.txt

    .venv/bin/python bench/profile_ingest.py --chunk 1 --worker /tmp/worker-1.txt   # the worker itself
    .venv/bin/python bench/profile_ingest.py --summarise /tmp/worker-1.txt

(py-spy is installed into the peer's environment by `make bench-peer-env`; the services must be up.)
`--worker OUT` attaches py-spy to `stream-app worker` on the produced topic until it has ingested every
reading, and writes py-spy's raw profile to OUT (faust's start-up and the model load are in it too:
read the stages, not the total).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import multiprocessing
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# the stages, by the innermost frame of a stack that names one (asyncio callbacks carry no caller)
STAGES = {
    "ingest loop (IngestLoop, sends, commit)": ("ingest_loop.py",),
    "faust (producer, agents, timers)": ("faust/", "mode/"),
    "Kafka client (aiokafka: fetch, decode, crc)": ("aiokafka/", "kafka/"),
    "parse + validate (MessageParser)": ("messages.py",),
    "Redis client (redis-py: pipeline, encode, socket)": ("redis/", "hiredis"),
    "window store (RedisWindowStore)": ("redis_window_store.py",),
    "ingest bookkeeping (IngestStage)": ("ingest_stage.py",),
    "event loop (asyncio)": ("asyncio/", "selectors.py"),
}


# start-up and the wait for the producing process are not ingest
IGNORED = ("multiprocessing/", "threading.py", "importlib", "_produce", "torch/", "_find_and_load")


def summarise(path: Path, top: int = 25) -> None:
    self_time: collections.Counter[str] = collections.Counter()
    stage_time: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        if any(k in f for f in frames for k in IGNORED):
            continue
        total += n
        self_time[frames[-1]] += n
        stage = next((name for f in reversed(frames) for name, keys in STAGES.items() if any(k in f for k in keys)),
                     "other")
        stage_time[stage] += n
    print(f"{total} samples")
    for name, n in stage_time.most_common():
        print(f"  {100 * n / total:5.1f}%  {name}")
    print("self time, top functions:")
    for name, n in self_time.most_common(top):
        print(f"  {100 * n / total:5.1f}%  {name}")


def run(chunk: int, readings: int, worker_profile: Path | None) -> None:
    from bench_ingest import STEPS_PER_CASTING, loop_pipelined, run_worker
    from common import bench_config, create_topics, delete_redis_prefix, delete_topics, unique_name

    run_id = unique_name("profile")
    cfg = bench_config(run_id, Path("checkpoints/default/model.pt"))
    create_topics(cfg)
    try:
        # produced from another process, so that the profile of this one holds the ingest only
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            pool.apply(_produce, (cfg, readings, chunk))
        if worker_profile is None:
            n, s = asyncio.run(loop_pipelined(cfg, cfg.batching.ingest_take_size))
        else:
            n, s = run_worker(cfg, readings // STEPS_PER_CASTING * STEPS_PER_CASTING, naive=False, max_s=120,
                              attach=lambda pid: _py_spy(pid, worker_profile))
        print(f"chunk {chunk}: {n} readings in {s:.1f} s, {n / s:,.0f}/s ({readings // STEPS_PER_CASTING} castings)")
    finally:
        delete_redis_prefix(cfg)
        delete_topics(cfg, run_id)


@contextlib.contextmanager
def _py_spy(pid: int, out: Path) -> Iterator[None]:
    """py-spy attached to `pid` while the block runs; SIGINT makes it write its profile and exit."""
    spy = Path(__file__).resolve().parent.parent / ".venv-quix" / "bin" / "py-spy"
    proc = subprocess.Popen([str(spy), "record", "-r", "250", "-f", "raw", "-o", str(out), "--pid", str(pid)])
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def _produce(cfg, readings: int, chunk: int) -> None:
    from bench_ingest import sensor_messages
    from common import produce

    produce(cfg, sensor_messages(readings, chunk, "F"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunk", type=int, default=1)
    parser.add_argument("--readings", type=int, default=None, help="default 150k single, 1M in chunks")
    parser.add_argument("--summarise", type=Path, default=None, help="print a py-spy raw profile's summary")
    parser.add_argument("--worker", type=Path, default=None, metavar="OUT",
                        help="profile the worker process under py-spy into OUT (raw) instead of loop (b)")
    args = parser.parse_args()
    if args.summarise:
        summarise(args.summarise)
    else:
        run(args.chunk, args.readings or (150_000 if args.chunk == 1 else 1_000_000), args.worker)


if __name__ == "__main__":
    main()
