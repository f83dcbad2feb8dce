"""At-least-once under failures: SIGKILL and restart, and a worker lost from a two-worker group."""

from __future__ import annotations

import random
import threading
import time

import pytest

from stream_app.tools.simulate import RateLimiter, interleave
from tests.test_stream_app.harness import assert_predictions_match, make_castings, produce

pytestmark = pytest.mark.integration


def produce_in_background(cfg, castings, rate_per_s: float, chunk_size: int = 10) -> threading.Thread:
    """Stream the castings at a steady message rate, so failures land mid-stream."""
    limiter = RateLimiter(rate_per_s)

    def paced():
        for key, value in interleave(castings, strands=6, chunk_size=chunk_size):
            limiter.wait()
            yield key.encode(), value

    thread = threading.Thread(target=produce, args=(cfg, paced()), daemon=True)
    thread.start()
    return thread


def test_sigkill_three_times_and_restart_loses_nothing(service_config, worker_factory, reader_factory,
                                                       tiny_checkpoint):
    cfg = service_config(topics={"partitions": 4})
    castings = make_castings(120, seed=21, prefix="K")
    n_messages = sum(len(c.values) // 10 + 2 for c in castings)
    worker = worker_factory(cfg).start()
    producer = produce_in_background(cfg, castings, rate_per_s=n_messages / 30.0)  # ~30 s of stream
    rng = random.Random(5)
    for _ in range(3):
        time.sleep(rng.uniform(4.0, 9.0))
        worker.kill()
        worker.start()
    producer.join(timeout=120)
    reader = reader_factory(cfg, cfg.topics.predictions)
    reader.read_distinct_keys(len(castings), 240, worker)
    assert_predictions_match(reader.json(), castings, tiny_checkpoint)
    assert worker.starts == 4


def test_two_workers_one_killed_mid_stream(service_config, worker_factory, reader_factory, tiny_checkpoint):
    cfg = service_config(topics={"partitions": 4})
    castings = make_castings(100, seed=31, prefix="G")
    n_messages = sum(len(c.values) // 10 + 2 for c in castings)
    first, second = worker_factory(cfg).start(), worker_factory(cfg).start()
    time.sleep(8)  # both in the group before the stream starts
    producer = produce_in_background(cfg, castings, rate_per_s=n_messages / 20.0)
    time.sleep(8)
    first.kill()
    producer.join(timeout=120)
    reader = reader_factory(cfg, cfg.topics.predictions)
    reader.read_distinct_keys(len(castings), 240, second)
    assert_predictions_match(reader.json(), castings, tiny_checkpoint)


def test_sigterm_mid_stream_exits_0_and_hands_back_in_flight_work(service_config, worker_factory, reader_factory,
                                                                   tiny_checkpoint):
    cfg = service_config(topics={"partitions": 4})
    castings = make_castings(60, seed=35, prefix="T")
    n_messages = sum(len(c.values) // 10 + 2 for c in castings)
    worker = worker_factory(cfg).start()
    producer = produce_in_background(cfg, castings, rate_per_s=n_messages / 15.0)
    time.sleep(7)
    assert worker.terminate() == 0, worker.log_tail()
    worker.start()
    producer.join(timeout=120)
    reader = reader_factory(cfg, cfg.topics.predictions)
    reader.read_distinct_keys(len(castings), 180, worker)
    assert_predictions_match(reader.json(), castings, tiny_checkpoint)
