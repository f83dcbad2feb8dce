"""IngestLoop in-process against the real broker and Redis: an outage holds the batch, loses nothing."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Awaitable, Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from stream_app.runtime.connections import aiokafka_kwargs, create_redis, create_redis_sync
from stream_app.runtime.ingest_loop import IngestLoop, ingest_group_id
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.outages import Dependency
from stream_app.service.ingest_stage import IngestOutcome, IngestStage
from stream_app.service.messages import MessageParser
from stream_app.service.redis_window_store import RedisWindowStore
from tests.test_stream_app.harness import buffered_readings, free_port, make_castings, produce_castings

pytestmark = pytest.mark.integration


async def committed_offsets(cfg) -> tuple[int, int]:
    """(committed, end) over all partitions of the sensor topic for the ingest group."""
    consumer = AIOKafkaConsumer(**aiokafka_kwargs(cfg.kafka), group_id=ingest_group_id(cfg), enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(cfg.topics.sensors, p) for p in range(cfg.topics.partitions)]
        ends = await consumer.end_offsets(tps)
        committed = [await consumer.committed(tp) or 0 for tp in tps]
        return sum(committed), sum(ends.values())
    finally:
        await consumer.stop()


async def fully_committed(cfg) -> bool:
    committed, end = await committed_offsets(cfg)
    return committed == end


async def eventually(check: Callable[[], Awaitable[bool] | bool], task: asyncio.Task, timeout_s: float = 30.0) -> bool:
    """Poll `check` until it holds (True) or `timeout_s` passes (False); the consumer task must keep running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = check()
        if await result if inspect.isawaitable(result) else result:
            return True
        assert not task.done(), task
        await asyncio.sleep(0.1)
    return False


async def stop(task: asyncio.Task, redis_sync, prefix: str) -> None:
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for key in redis_sync.scan_iter(f"{prefix}:*"):
        redis_sync.delete(key)


async def test_a_redis_outage_holds_the_batch_until_redis_answers(service_config, caplog):
    cfg = service_config()
    castings = make_castings(3, seed=5, prefix="OUT")
    produce_castings(cfg, castings, chunk_sizes=(1, 10))

    unreachable = create_redis(cfg.redis.model_copy(update={"url": f"redis://127.0.0.1:{free_port()}/0"}))
    real = create_redis(cfg.redis)
    store = RedisWindowStore(unreachable, cfg.redis_prefix, cfg.redis.key_ttl_s)
    requests: list[str] = []

    async def send(outcome: IngestOutcome, now: float) -> None:
        assert not outcome.deadletters, outcome.deadletters
        requests.extend(r.casting_id for r in outcome.requests)

    metrics = Metrics()
    redis_dep = Dependency("redis", initial_wait_s=0.05, max_wait_s=0.2)
    consumer = IngestLoop(cfg, IngestStage(MessageParser(cfg.validation), store), send, metrics,
                          redis_dep, Dependency("kafka"))
    sync = create_redis_sync(cfg.redis)
    task = asyncio.create_task(consumer.run())

    def lines(text: str) -> list[str]:
        return [r.getMessage() for r in caplog.records if text in r.getMessage()]

    try:
        with caplog.at_level(logging.INFO, logger="stream_app.runtime.outages"):
            assert await eventually(lambda: redis_dep.failed_attempts >= 5, task), "the outage was never noticed"
            assert not redis_dep.ready
            assert metrics.ingest_retries._value.get() >= 5
            assert requests == []
            assert (await committed_offsets(cfg))[0] == 0  # nothing committed while Redis is away

            store.client = real  # Redis is back
            await eventually(lambda: len(requests) == len(castings), task)
        assert redis_dep.ready
        unreachable_lines = lines("unreachable")
        assert len(unreachable_lines) == 1, unreachable_lines  # one line per outage, not one per attempt
        assert "ConnectionError" in unreachable_lines[0]
        assert len(lines("redis is back after")) == 1
        assert sorted(requests) == sorted(c.casting_id for c in castings)
        for casting in castings:  # every reading of the failed batches was written after all
            assert buffered_readings(sync, store.window_key(casting.casting_id)) == len(casting.values)
        assert await eventually(lambda: fully_committed(cfg), task)
    finally:
        await stop(task, sync, cfg.redis_prefix)
        sync.close()
        await unreachable.aclose()
        await real.aclose()


async def test_stop_lets_the_batch_in_hand_commit_and_ends_the_loop(service_config):
    # faust stops its producer before it cancels its tasks; `stop` runs first, so no send meets a stopped producer
    cfg = service_config()
    castings = make_castings(3, seed=6, prefix="STOP")
    produce_castings(cfg, castings, chunk_sizes=(1, 10))
    store = RedisWindowStore(create_redis(cfg.redis), cfg.redis_prefix, cfg.redis.key_ttl_s)
    sending, release = asyncio.Event(), asyncio.Event()
    sends = 0

    async def send(outcome: IngestOutcome, now: float) -> None:
        nonlocal sends
        sends += 1
        sending.set()
        await release.wait()  # the broker is slow to acknowledge the batch in hand

    loop = IngestLoop(cfg, IngestStage(MessageParser(cfg.validation), store), send, Metrics(),
                      Dependency("redis"), Dependency("kafka"))
    sync = create_redis_sync(cfg.redis)
    task = asyncio.create_task(loop.run())
    try:
        await asyncio.wait_for(sending.wait(), 30)
        stopping = asyncio.create_task(loop.stop())
        await asyncio.sleep(0.3)
        assert not stopping.done()  # waits for the batch in hand
        release.set()
        await asyncio.wait_for(stopping, 10)
        await asyncio.wait_for(task, 10)  # the loop ends by itself, without a cancel
        assert sends == 1  # no batch taken after `stop`
        committed, end = await committed_offsets(cfg)
        assert 0 < committed <= end  # the batch in hand was committed
    finally:
        release.set()
        if not task.done():
            await stop(task, sync, cfg.redis_prefix)
        for key in sync.scan_iter(f"{cfg.redis_prefix}:*"):
            sync.delete(key)
        sync.close()
        await store.client.aclose()


async def test_stop_during_an_outage_hands_the_batch_back(service_config, caplog):
    cfg = service_config()
    produce_castings(cfg, make_castings(2, seed=7, prefix="STOPOUT"), chunk_sizes=(1, 10))
    unreachable = create_redis(cfg.redis.model_copy(update={"url": f"redis://127.0.0.1:{free_port()}/0"}))
    store = RedisWindowStore(unreachable, cfg.redis_prefix, cfg.redis.key_ttl_s)
    redis_dep = Dependency("redis", initial_wait_s=0.05, max_wait_s=0.2)

    async def send(outcome: IngestOutcome, now: float) -> None:
        raise AssertionError("nothing reaches the sends while Redis is away")

    loop = IngestLoop(cfg, IngestStage(MessageParser(cfg.validation), store), send, Metrics(), redis_dep,
                      Dependency("kafka"))
    task = asyncio.create_task(loop.run())
    try:
        with caplog.at_level(logging.WARNING, logger="stream_app.runtime.ingest_loop"):
            assert await eventually(lambda: redis_dep.failed_attempts >= 2, task)
            await asyncio.wait_for(loop.stop(), 10)
            await asyncio.wait_for(task, 10)
        assert any("the worker is stopping during an outage" in r.getMessage() for r in caplog.records)
        assert (await committed_offsets(cfg))[0] == 0  # handed back: the next owner reads it all again
    finally:
        if not task.done():
            task.cancel()
        await unreachable.aclose()
