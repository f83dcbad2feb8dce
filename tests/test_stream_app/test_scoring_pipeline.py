"""ScoringPipeline against the real Redis: two batches in flight, delivered in order, identical duplicates."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from stream_app.runtime.connections import create_redis
from stream_app.runtime.scoring_pipeline import ScoringPipeline
from stream_app.service.messages import Readings
from stream_app.service.model_runner import Scorer
from stream_app.service.records import ScoringRequest
from stream_app.service.redis_window_store import RedisWindowStore
from stream_app.service.scoring_stage import ScoringOutcome, ScoringStage
from stream_app.service.window_store import IngestWrites

pytestmark = pytest.mark.integration


@pytest.fixture
def scorer(tiny_checkpoint) -> Scorer:
    return Scorer.from_checkpoint(tiny_checkpoint, "cpu")


@pytest.fixture
async def stage(stream_config, scorer, redis_client):  # redis_client: fails clearly without Redis, cleans up
    client = create_redis(stream_config.redis)
    store = RedisWindowStore(client, stream_config.redis_prefix, 600)
    executor = ThreadPoolExecutor(max_workers=1)
    yield ScoringStage(store, scorer, stream_config.window, 0.5, 8, executor)
    executor.shutdown()
    await client.aclose()


def window(seed: int, n_steps: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n_steps, 5)).astype(np.float32)


async def buffer(stage: ScoringStage, ids: list[str]) -> list[ScoringRequest]:
    """Write the castings' windows as the ingest would and return their scoring requests."""
    windows = [window(i, 100 + 7 * i) for i in range(len(ids))]
    rows = [Readings(c, 0, w) for c, w in zip(ids, windows, strict=True)]
    await stage.store.write_ingest(IngestWrites(rows, seals={}, discard=[]), time.time())
    return [ScoringRequest(c, len(w), time.time(), {"topic": "t", "partition": 0, "offset": i})
            for i, (c, w) in enumerate(zip(ids, windows, strict=True))]


def probabilities(outcome: ScoringOutcome) -> dict[str, float]:
    return {c: json.loads(p)["defect_probability"] for c, p in outcome.predictions}


async def test_batches_are_delivered_in_order_with_the_same_scores_as_one_at_a_time(stage):
    batches = [[f"P{b}-{i}" for i in range(1 + b % 4)] for b in range(7)]
    requests = [await buffer(stage, ids) for ids in batches]
    expected = [probabilities(await stage.complete(await stage.prepare(r))) for r in requests]
    await stage.store.client.delete(*(stage.store.done_key(c) for ids in batches for c in ids))

    delivered: list[tuple[int, dict[str, float], bool]] = []

    async def deliver(outcome: ScoringOutcome, token: int) -> None:
        await asyncio.sleep(0.01 * (token % 3))  # uneven sends must not reorder deliveries
        await stage.finish(outcome)
        windows_left = await stage.store.client.exists(*(stage.store.window_key(c) for c in outcome.casting_ids))
        delivered.append((token, probabilities(outcome), windows_left == 0))

    pipeline = ScoringPipeline(stage, deliver)
    for token, batch in enumerate(requests):
        await pipeline.submit(batch, token)
        assert len(delivered) >= token  # at most two batches open: the one before is delivered
    await pipeline.drain()
    assert [token for token, _, _ in delivered] == list(range(len(batches)))
    assert [probs for _, probs, _ in delivered] == expected
    assert all(freed for _, _, freed in delivered)


async def test_a_casting_in_two_batches_in_flight_is_sent_with_the_same_bytes(stage):
    """A re-delivered request can reach the next batch before the first batch stored its outcome."""
    first, second = await buffer(stage, ["D-1", "D-2"]), None
    second = [first[0]]  # D-1 again, as a re-delivery would bring it
    sent: list[tuple[str, bytes]] = []

    async def deliver(outcome: ScoringOutcome, token: int) -> None:
        sent.extend(outcome.predictions)

    pipeline = ScoringPipeline(stage, deliver)
    await pipeline.submit(first, 0)
    await pipeline.submit(second, 1)  # fetched while batch 0 is still in the forward: no stored outcome yet
    await pipeline.drain()
    copies = [payload for casting_id, payload in sent if casting_id == "D-1"]
    assert len(copies) == 2
    assert copies[0] == copies[1]


async def test_a_failed_delivery_stops_the_next_submit(stage):
    requests = await buffer(stage, ["F-1", "F-2"])

    async def deliver(outcome: ScoringOutcome, token: int) -> None:
        raise ConnectionError("broker went away")

    pipeline = ScoringPipeline(stage, deliver)
    await pipeline.submit(requests[:1], 0)
    with pytest.raises(ConnectionError, match="broker went away"):
        await pipeline.submit(requests[1:], 1)
    pipeline.cancel()
    with pytest.raises((ConnectionError, asyncio.CancelledError)):
        await pipeline.drain()
