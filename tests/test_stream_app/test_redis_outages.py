"""Redis killed (SIGKILL) and restarted under a live worker: during ingest, during a scoring burst, while
idle, and with SIGTERM in the middle of the outage. Every fault is triggered by the worker's own
metrics and checked to have landed mid-stream; afterwards every casting is scored exactly as an
undisturbed run would score it, duplicates are identical, and the worker is alive and ready again.
"""

from __future__ import annotations

import time

import pytest

from stream_app.tools.simulate import casting_messages
from tests.test_stream_app.harness import assert_predictions_match, make_castings, produce, readings_then_ends
from tests.test_stream_app.test_faults import produce_in_background

pytestmark = pytest.mark.integration

OUTAGE_S = 3.0  # how long Redis stays down: long enough for several retries and a sweep tick


def ready(worker) -> bool:
    return worker.health()[0] == 200


def unready(worker) -> bool:
    status, body = worker.health()
    return status == 503 and body["redis"].startswith("down")


def outage(worker, redis_server, down_s: float = OUTAGE_S) -> None:
    """Kill Redis, see the worker turn unready (alive), bring Redis back, see it ready again."""
    redis_server.kill()
    worker.wait_for(lambda: unready(worker), "/health to report Redis down", timeout_s=30)
    time.sleep(down_s)
    redis_server.start()
    worker.wait_for(lambda: ready(worker), "/health to report ready again", timeout_s=60)


def start_worker(service_config, worker_factory, redis_server, **overrides):
    cfg = service_config(redis={"url": redis_server.url}, **overrides)
    worker = worker_factory(cfg).start()
    worker.wait_for(lambda: ready(worker), "the worker to be ready")
    return cfg, worker


def test_redis_killed_during_ingest(service_config, worker_factory, reader_factory, tiny_checkpoint, redis_server):
    cfg, worker = start_worker(service_config, worker_factory, redis_server, topics={"partitions": 4})
    castings = make_castings(60, seed=91, prefix="RI")
    total = sum(len(c.values) for c in castings)
    n_messages = sum(len(c.values) // 10 + 2 for c in castings)
    producer = produce_in_background(cfg, castings, rate_per_s=n_messages / 20.0)  # ~20 s of stream
    worker.wait_for(lambda: worker.metric("casting_readings_ingested_total") > 0, "the first readings")

    redis_server.kill()
    assert worker.metric("casting_readings_ingested_total") < total, "the fault must land mid-stream"
    worker.wait_for(lambda: unready(worker), "/health to report Redis down", timeout_s=30)
    time.sleep(OUTAGE_S)
    redis_server.start()
    worker.wait_for(lambda: ready(worker), "/health to report ready again", timeout_s=60)
    producer.join(timeout=120)

    predictions = reader_factory(cfg, cfg.topics.predictions)
    predictions.read_distinct_keys(len(castings), 240, worker)
    assert_predictions_match(predictions.json(), castings, tiny_checkpoint)
    assert worker.metric('casting_dependency_outage_seconds_total') >= OUTAGE_S
    assert worker.alive() and ready(worker)


def test_redis_killed_during_a_scoring_burst(service_config, worker_factory, reader_factory, tiny_checkpoint,
                                             redis_server):
    cfg, worker = start_worker(service_config, worker_factory, redis_server, topics={"partitions": 4},
                               batching={"max_batch_size": 32})
    castings = make_castings(400, seed=92, prefix="RB")
    readings, ends = readings_then_ends(castings, chunk_size=100)
    produce(cfg, readings)
    total = sum(len(c.values) for c in castings)
    worker.wait_for(lambda: worker.metric("casting_readings_ingested_total") >= total, "every reading buffered")

    produce(cfg, ends)  # the burst
    worker.wait_for(lambda: worker.metric("casting_castings_scored_total") > 0, "the first predictions")
    redis_server.kill()
    assert worker.metric("casting_castings_scored_total") < len(castings), "the fault must land mid-burst"
    worker.wait_for(lambda: unready(worker), "/health to report Redis down", timeout_s=30)
    time.sleep(OUTAGE_S)
    redis_server.start()

    predictions = reader_factory(cfg, cfg.topics.predictions)
    predictions.read_distinct_keys(len(castings), 240, worker)
    assert_predictions_match(predictions.json(), castings, tiny_checkpoint)  # duplicates, if any, identical
    worker.wait_for(lambda: ready(worker), "/health to report ready again", timeout_s=60)


def test_redis_killed_while_idle(service_config, worker_factory, reader_factory, tiny_checkpoint, redis_server):
    cfg, worker = start_worker(service_config, worker_factory, redis_server,
                               window={"sweep_interval_s": 0.5})  # the sweep runs into the outage too
    before, after = make_castings(5, seed=93, prefix="IA"), make_castings(5, seed=94, prefix="IB")
    produce(cfg, [(c.casting_id.encode(), m) for c in before for m in casting_messages(c.casting_id, c.values, 50)])
    predictions = reader_factory(cfg, cfg.topics.predictions)
    predictions.read_distinct_keys(len(before), 120, worker)

    outage(worker, redis_server)

    produce(cfg, [(c.casting_id.encode(), m) for c in after for m in casting_messages(c.casting_id, c.values, 50)])
    predictions.read_distinct_keys(len(before) + len(after), 120, worker)
    assert_predictions_match(predictions.json(), before + after, tiny_checkpoint)
    assert worker.alive()


def test_sigterm_during_a_redis_outage_exits_within_the_grace_and_loses_nothing(
    service_config, worker_factory, reader_factory, tiny_checkpoint, redis_server
):
    grace_s = 8.0
    cfg, worker = start_worker(service_config, worker_factory, redis_server, topics={"partitions": 2},
                               resilience={"shutdown_grace_s": grace_s})
    castings = make_castings(30, seed=95, prefix="RT")
    n_messages = sum(len(c.values) // 10 + 2 for c in castings)
    producer = produce_in_background(cfg, castings, rate_per_s=n_messages / 10.0)
    worker.wait_for(lambda: worker.metric("casting_readings_ingested_total") > 0, "the first readings")
    redis_server.kill()
    worker.wait_for(lambda: unready(worker), "/health to report Redis down", timeout_s=30)

    started = time.monotonic()
    code = worker.terminate(timeout_s=grace_s + 20)
    took = time.monotonic() - started
    assert took <= grace_s + 5, f"SIGTERM took {took:.1f}s with shutdown_grace_s={grace_s}"
    assert code == 0, worker.log_tail()

    redis_server.start()
    producer.join(timeout=120)
    worker.start()
    predictions = reader_factory(cfg, cfg.topics.predictions)
    predictions.read_distinct_keys(len(castings), 240, worker)
    assert_predictions_match(predictions.json(), castings, tiny_checkpoint)


def test_a_worker_started_while_the_broker_is_down_waits_and_stops_cleanly(stream_config_factory, worker_factory,
                                                                           tiny_checkpoint):
    from tests.test_stream_app.harness import free_port

    cfg = stream_config_factory(kafka={"bootstrap_servers": [f"127.0.0.1:{free_port()}"]},
                                model={"checkpoint": str(tiny_checkpoint), "device": "cpu", "torch_threads": 1})
    worker = worker_factory(cfg).start()
    # the first call at start-up is the connection check (`connections.check_connections`)
    worker.wait_for(lambda: "kafka unreachable during connection check" in worker.log_tail(20000),
                    "the worker to say it waits for the broker", timeout_s=90)
    time.sleep(1.0)  # several retries later it is still waiting, not exited
    assert worker.alive(), worker.log_tail()
    assert worker.log_tail(20000).count("kafka unreachable") == 1  # one line for the outage, not one per attempt
    assert worker.terminate(timeout_s=30) == 0, worker.log_tail()
