"""The compose stack from the host (`make test-compose` runs this after the integration-tests service):
the simulator's castings come out of the worker as predictions; a worker container killed mid-stream and
restarted by compose loses nothing (the check of tests/test_stream_app/test_faults.py); Redis restarted by
compose keeps its windows (the AOF volume) and the castings open at the restart are still scored.

Every prediction is compared with the checkpoint run offline on the same castings."""

from __future__ import annotations

import threading
import uuid

import pytest
from compose_stack import wait_until

from stream_app.tools.simulate import load_castings, name_by_strand
from tests.test_stream_app.harness import assert_predictions_match, make_castings, produce, readings_then_ends
from tests.test_stream_app.test_faults import INGESTED, messages_of, produce_in_background

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1200)]


def unique_prefix(tag: str) -> str:
    return f"{tag}-{uuid.uuid4().hex[:8]}"


def ours(reader, prefix: str) -> list[dict]:
    """Predictions of the castings whose id starts with `prefix`, read so far."""
    return [p for p in reader.json() if p["casting_id"].startswith(prefix)]


def predicted(reader, prefix: str) -> int:
    reader.poll(200)
    return len({p["casting_id"] for p in ours(reader, prefix)})


def read_all(reader, prefix: str, count: int, timeout_s: float) -> list[dict]:
    wait_until(lambda: predicted(reader, prefix) >= count, f"{count} predictions of {prefix}-*", timeout_s, 0.1)
    return ours(reader, prefix)


def test_simulator_castings_come_out_as_predictions(stack, predictions, checkpoint):
    prefix = unique_prefix("SIM")
    stack.compose("run", "--rm", "--no-deps", "-T", "simulator",
                  "simulate", "--castings", "200", "--rate", "2000", "--prefix", prefix, "--no-progress")
    # the simulator's castings: seed 0 and 4 strands by default, ids naming their strand
    generated = load_castings(count=200, seed=0, prefix=prefix, channels=stack.config().validation.channels)
    castings = name_by_strand(generated, prefix, strands=4)
    assert_predictions_match(read_all(predictions, prefix, 200, 300), castings, checkpoint)


def test_worker_killed_mid_stream_and_restarted_by_compose_loses_nothing(stack, predictions, checkpoint):
    cfg = stack.config()
    prefix = unique_prefix("KILL")
    castings = make_castings(120, seed=21, prefix=prefix)
    release = threading.Event()
    producer = produce_in_background(cfg, castings, rate_per_s=messages_of(castings) / 40.0, hold_back=release)
    try:
        for kill in (1, 2):  # each start of the worker is killed once it ingests, at 30 and 60 predictions
            due = kill * len(castings) // 4
            wait_until(lambda due=due: stack.metric(INGESTED) > 0 and predicted(predictions, prefix) >= due,
                       f"kill {kill}: readings ingested by this start and {due} predictions", 300, 0.1)
            scored = predicted(predictions, prefix)
            assert scored < len(castings), f"the kill must land mid-stream: {scored} of {len(castings)} predicted"
            stack.podman("kill", stack.container("worker"))
            stack.compose("start", "worker")
            stack.wait_healthy("worker")
    finally:
        release.set()
    producer.join(timeout=300)
    assert not producer.is_alive(), "the producer did not finish"
    assert_predictions_match(read_all(predictions, prefix, len(castings), 300), castings, checkpoint)


def test_redis_restarted_by_compose_keeps_windows_and_open_castings_are_scored(stack, predictions, checkpoint):
    cfg = stack.config()
    prefix = unique_prefix("AOF")
    castings = make_castings(40, seed=41, prefix=prefix)
    readings, ends = readings_then_ends(castings, chunk_size=10)
    before = stack.metric(INGESTED)
    produce(cfg, readings)
    total = sum(len(c.values) for c in castings)
    wait_until(lambda: stack.metric(INGESTED) - before >= total, f"{total} readings ingested", 300)
    expected = {c.casting_id: len(c.values) for c in castings}
    assert stack.window_lengths(cfg.redis_prefix, prefix) == expected

    stack.compose("restart", "redis")
    stack.wait_healthy("redis")
    assert stack.window_lengths(cfg.redis_prefix, prefix) == expected, "windows lost across the Redis restart"

    stack.wait_healthy("worker")
    produce(cfg, ends)  # the castings open at the restart end now
    assert_predictions_match(read_all(predictions, prefix, len(castings), 300), castings, checkpoint)
