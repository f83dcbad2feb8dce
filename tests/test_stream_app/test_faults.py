"""At-least-once under failures: SIGKILL and restart, a worker lost from a two-worker group, SIGTERM.

Every fault is triggered by an event (the worker's metrics show readings ingested, and a number of
predictions has been read) and checked at the moment it lands to be mid-stream: the killed worker had
ingested part of the readings and not every casting was predicted yet. The stream's last fifth is held
back until the faults are done, so on a slow machine a fault still cannot land after the stream's end.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from stream_app.tools.simulate import RateLimiter, interleave
from tests.test_stream_app.harness import assert_predictions_match, make_castings, produce

pytestmark = pytest.mark.integration

INGESTED = "casting_readings_ingested_total"


def produce_in_background(cfg, castings, rate_per_s: float, chunk_size: int = 10,
                          hold_back: threading.Event | None = None, held_share: float = 0.2,
                          gates: Sequence[tuple[float, threading.Event]] = ()) -> threading.Thread:
    """Stream the castings at a steady message rate, so failures land mid-stream. With `hold_back`, the
    last `held_share` of the messages is sent only once that event is set. Each `(share, event)` of `gates`
    holds the messages from that share of the stream on until its event is set."""
    limiter = RateLimiter(rate_per_s)
    messages = list(interleave(castings, strands=6, chunk_size=chunk_size))
    waits = {int(len(messages) * share): event for share, event in gates}
    if hold_back is not None:
        waits[len(messages) - int(len(messages) * held_share)] = hold_back

    def paced():
        for i, (key, value) in enumerate(messages):
            if i in waits and not waits[i].wait(timeout=600):
                return
            limiter.wait()
            yield key.encode(), value

    thread = threading.Thread(target=produce, args=(cfg, paced()), daemon=True)
    thread.start()
    return thread


def predicted(reader) -> int:
    """Distinct castings predicted so far (reads what has arrived)."""
    reader.poll(100)
    return len({r.key for r in reader.records})


def assert_mid_stream(worker, predictions, castings) -> None:
    """At the fault: the worker has ingested some but not all readings, and some casting is still unpredicted."""
    total = sum(len(c.values) for c in castings)
    ingested = worker.metric(INGESTED)
    assert 0 < ingested < total, f"the fault must land mid-stream: {ingested:.0f} of {total} readings ingested"
    scored = predicted(predictions)
    assert scored < len(castings), f"the fault must land before the last prediction: {scored} of {len(castings)}"


def messages_of(castings) -> int:
    return sum(len(c.values) // 10 + 2 for c in castings)


def test_sigkill_three_times_and_restart_loses_nothing(service_config, worker_factory, reader_factory,
                                                       tiny_checkpoint):
    cfg = service_config(topics={"partitions": 4})
    castings = make_castings(120, seed=21, prefix="K")
    predictions = reader_factory(cfg, cfg.topics.predictions)
    worker = worker_factory(cfg).start()
    # the stream comes in parts: 40 % at once, then 20 % after each restart, so every start of the worker has
    # readings of its own to ingest however long a start takes on a loaded machine (the last 20 % after the loop)
    gates = [(share, threading.Event()) for share in (0.4, 0.6, 0.8)]
    producer = produce_in_background(cfg, castings, rate_per_s=messages_of(castings) / 30.0, gates=gates)
    try:
        for kill in (1, 2, 3):  # each start of the worker is killed once it ingests, at 24, 48, 72 predictions
            due = kill * len(castings) // 5
            worker.wait_for(lambda due=due: worker.metric(INGESTED) > 0 and predicted(predictions) >= due,
                            f"kill {kill}: readings ingested by this start and {due} predictions")
            assert_mid_stream(worker, predictions, castings)
            worker.kill()
            worker.start()
            gates[kill - 1][1].set()
    finally:
        for _, gate in gates:
            gate.set()
    producer.join(timeout=120)
    predictions.read_distinct_keys(len(castings), 240, worker)
    assert_predictions_match(predictions.json(), castings, tiny_checkpoint)


def test_two_workers_one_killed_mid_stream(service_config, worker_factory, reader_factory, tiny_checkpoint):
    cfg = service_config(topics={"partitions": 4})
    castings = make_castings(100, seed=31, prefix="G")
    predictions = reader_factory(cfg, cfg.topics.predictions)
    first, second = worker_factory(cfg).start(), worker_factory(cfg).start()
    for worker in (first, second):  # both up before the stream starts
        worker.wait_for(worker.ready, "both workers ready")
    release = threading.Event()
    producer = produce_in_background(cfg, castings, rate_per_s=messages_of(castings) / 20.0, hold_back=release)
    try:
        due = len(castings) // 4

        def both_share_the_stream() -> bool:
            second.check_alive()
            return first.metric(INGESTED) > 0 and second.metric(INGESTED) > 0 and predicted(predictions) >= due

        first.wait_for(both_share_the_stream, f"both workers ingesting and {due} predictions")
        assert_mid_stream(first, predictions, castings)
        first.kill()
    finally:
        release.set()
    producer.join(timeout=120)
    predictions.read_distinct_keys(len(castings), 240, second)
    assert_predictions_match(predictions.json(), castings, tiny_checkpoint)


def test_sigterm_mid_stream_exits_0_and_hands_back_in_flight_work(service_config, worker_factory, reader_factory,
                                                                   tiny_checkpoint):
    cfg = service_config(topics={"partitions": 4})
    castings = make_castings(60, seed=35, prefix="T")
    predictions = reader_factory(cfg, cfg.topics.predictions)
    worker = worker_factory(cfg).start()
    release = threading.Event()
    producer = produce_in_background(cfg, castings, rate_per_s=messages_of(castings) / 15.0, hold_back=release)
    try:
        due = len(castings) // 3
        worker.wait_for(lambda: worker.metric(INGESTED) > 0 and predicted(predictions) >= due,
                        f"readings ingested and {due} predictions")
        assert_mid_stream(worker, predictions, castings)
        assert worker.terminate() == 0, worker.log_tail()
        worker.start()
    finally:
        release.set()
    producer.join(timeout=120)
    predictions.read_distinct_keys(len(castings), 180, worker)
    assert_predictions_match(predictions.json(), castings, tiny_checkpoint)
