"""Abandoned castings, micro-batching under a burst, the metrics endpoint, shutdown."""

from __future__ import annotations

import re
import time

import pytest

from stream_app.runtime.connections import create_redis_sync
from stream_app.tools.simulate import end_message, reading_message
from tests.test_stream_app.harness import assert_predictions_match, make_castings, produce, readings_then_ends

pytestmark = pytest.mark.integration

METRIC_SERIES = [
    "casting_readings_ingested_total",
    "casting_ingest_batch_retries_total",
    "casting_castings_scored_total",
    "casting_deadletters_total",
    "casting_open_castings",
    "casting_scoring_batch_size_bucket",
    "casting_scoring_batch_fill_bucket",
    "casting_queue_delay_seconds_bucket",
    "casting_inference_seconds_bucket",
    "casting_end_to_end_latency_seconds_bucket",
]


def metric_value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+-]+)$", text, re.MULTILINE)
    assert match, f"{name} not in metrics"
    return float(match.group(1))


def test_abandoned_casting_is_dead_lettered_and_freed(service_config, worker_factory, reader_factory):
    cfg = service_config(window={"abandon_after_s": 3, "sweep_interval_s": 1})
    casting = make_castings(1, seed=51, prefix="AB")[0]
    worker = worker_factory(cfg).start()
    produce(cfg, [(b"AB-0000", reading_message("AB-0000", s, casting.values[s].tolist())) for s in range(120)])
    redis = create_redis_sync(cfg.redis)
    window_key = f"{cfg.redis_prefix}:win:{{AB-0000}}"
    deadline = time.monotonic() + 60
    while not redis.exists(window_key) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert redis.exists(window_key), worker.log_tail()

    letters = reader_factory(cfg, cfg.topics.deadletter)
    letters.read_until(lambda r: len(r) >= 1, timeout_s=60)
    assert [(x["reason"], x["casting_id"]) for x in letters.json()] == [("incomplete", "AB-0000")]
    # the sweep frees the window once the dead letter is acknowledged, which a reader may see first
    deadline = time.monotonic() + 10
    while redis.exists(window_key) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not redis.exists(window_key)
    assert redis.zscore(f"{cfg.redis_prefix}:open", "AB-0000") is None
    # an end marker that arrives after the sweep: the sweep sealed the casting as incomplete, so the end
    # marker conflicts with that seal (dead-lettered, not lost, and no new window is started)
    produce(cfg, [(b"AB-0000", end_message("AB-0000", 120))])
    letters.read_until(lambda r: len(r) >= 2, timeout_s=60)
    assert letters.json()[1]["reason"] == "conflicting_end"
    assert "incomplete" in letters.json()[1]["detail"]
    redis.close()


def test_burst_of_end_markers_scores_in_micro_batches_and_metrics_report_it(
    service_config, worker_factory, reader_factory, tiny_checkpoint
):
    cfg = service_config(batching={"max_batch_size": 64, "max_wait_ms": 50})
    castings = make_castings(256, seed=61, prefix="B")
    readings, ends = readings_then_ends(castings, chunk_size=100)
    worker = worker_factory(cfg).start()
    produce(cfg, readings)
    produce(cfg, ends)  # the burst: 256 end markers back to back

    predictions = reader_factory(cfg, cfg.topics.predictions)
    predictions.read_distinct_keys(len(castings), 240, worker)
    assert_predictions_match(predictions.json(), castings, tiny_checkpoint)

    text = worker.metrics_text()
    for series in METRIC_SERIES:
        assert re.search(rf"^{series}", text, re.MULTILINE), f"{series} missing from /metrics"
    batches = metric_value(text, "casting_scoring_batch_size_count")
    scored = metric_value(text, "casting_scoring_batch_size_sum")
    assert scored >= len(castings)
    assert scored / batches > 1.0, f"mean batch size {scored / batches:.2f}"
    assert max(p["batch_size"] for p in predictions.json()) > 1
    assert metric_value(text, "casting_readings_ingested_total") == sum(len(c.values) for c in castings)
    assert worker.terminate() == 0, worker.log_tail()
