"""Replay a historical sensor topic through the same parsing, window store and scoring code.

A bounded job, so no consumer group: an aiokafka consumer is assigned every partition, seeks to
`--from` (earliest or the first offset at/after an ISO time), and stops at the end offsets seen at
start (or at `--until`). It runs under its own app id, hence its own Redis prefix, and writes to its
own output topics, so a live worker on the same topic is untouched. Castings with a record before
`--from` in their partition are skipped (their window would be partial), as are castings still open
at the stop. That is decided from offsets, not from the readings that survive validation: the replay
reads the keys of the records in the `window.abandon_after_s` before `--from` (a casting idle longer
than that was dead-lettered live as `incomplete` anyway). With `--from earliest` nothing is skipped,
so a replay scores every casting the live worker scored.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from redis.exceptions import RedisClusterException, RedisError

from stream_app.config import StreamConfig
from stream_app.errors import ReplayError  # defined in the error tree; still importable from here
from stream_app.runtime.connections import aiokafka_kwargs, check_settings_once, create_redis, ping_redis
from stream_app.runtime.topics import ensure_topics
from stream_app.service.ingest_stage import IngestStage
from stream_app.service.messages import MessageParser
from stream_app.service.records import ConsumedRecord
from stream_app.service.redis_window_store import RedisWindowStore

if TYPE_CHECKING:  # torch is imported by whoever loads the model, not by planning a replay
    from stream_app.service.model_runner import Scorer
    from stream_app.service.records import ScoringRequest
    from stream_app.service.scoring_stage import ScoringOutcome, ScoringStage

log = logging.getLogger(__name__)


@dataclass
class ReplayPlan:
    start: dict[TopicPartition, int]
    stop: dict[TopicPartition, int]  # exclusive
    lookback: dict[TopicPartition, int] = field(default_factory=dict)  # keys read from here up to `start`

    @property
    def total(self) -> int:
        return sum(max(0, self.stop[tp] - self.start[tp]) for tp in self.start)


@dataclass
class ReplaySummary:
    records: int = 0
    readings: int = 0
    castings_scored: int = 0
    deadletters: Counter = field(default_factory=Counter)
    started_before_from: int = 0
    open_at_stop: int = 0
    seconds: float = 0.0

    @property
    def readings_per_s(self) -> float:
        return self.readings / self.seconds if self.seconds else 0.0

    def lines(self) -> list[str]:
        out = [
            f"records read          {self.records}",
            f"readings              {self.readings} ({self.readings_per_s:,.0f}/s)",
            f"castings scored       {self.castings_scored}",
            f"skipped, began before --from  {self.started_before_from}",
            f"skipped, open at stop         {self.open_at_stop}",
            f"dead letters          {sum(self.deadletters.values())}",
        ]
        out += [f"  {reason:<20} {count}" for reason, count in sorted(self.deadletters.items())]
        out.append(f"duration              {self.seconds:.1f}s")
        return out


def parse_time(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ReplayError(f"not an ISO-8601 time: {text!r} (e.g. 2026-11-27T08:00:00Z)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def plan_replay(
    consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, topic: str, start: str, until: str | None,
    lookback_s: float = 0.0,
) -> ReplayPlan:
    if topic not in await consumer.topics():  # checked first: a metadata request for it could create it
        raise ReplayError(f"topic {topic!r} does not exist")
    partitions = await producer.partitions_for(topic)  # public, and waits for the metadata (the consumer's does not)
    tps = [TopicPartition(topic, p) for p in sorted(partitions)]
    beginning = await consumer.beginning_offsets(tps)
    end = await consumer.end_offsets(tps)

    async def offsets_at(moment: datetime) -> dict[TopicPartition, int]:
        found = await consumer.offsets_for_times({tp: int(moment.timestamp() * 1000) for tp in tps})
        return {tp: (found[tp].offset if found.get(tp) is not None else end[tp]) for tp in tps}

    if start == "earliest":
        first, lookback = dict(beginning), dict(beginning)
    else:
        moment = parse_time(start)
        first = await offsets_at(moment)
        lookback = await offsets_at(moment - timedelta(seconds=lookback_s))
    stop = dict(end)
    if until is not None:
        stop = {tp: min(offset, end[tp]) for tp, offset in (await offsets_at(parse_time(until))).items()}
    return ReplayPlan(first, stop, lookback)


async def keys_before_start(consumer: AIOKafkaConsumer, plan: ReplayPlan, batch: int) -> set[bytes]:
    """Record keys (casting ids) between each partition's lookback and start offsets."""
    todo = {tp for tp in plan.start if plan.lookback[tp] < plan.start[tp]}
    for tp in todo:
        consumer.seek(tp, plan.lookback[tp])
    keys: set[bytes] = set()
    while todo:
        batches = await consumer.getmany(*todo, timeout_ms=1000, max_records=batch)
        for tp, messages in batches.items():
            keys.update(m.key for m in messages if m.offset < plan.start[tp] and m.key is not None)
        for tp in list(todo):
            if await consumer.position(tp) >= plan.start[tp]:
                todo.discard(tp)
    return keys


async def _open_clients(cfg: StreamConfig, own_producer: bool) -> tuple[AIOKafkaConsumer, AIOKafkaProducer | None]:
    """A started group-less consumer and, if asked, a started producer (for partition metadata)."""
    consumer = AIOKafkaConsumer(**aiokafka_kwargs(cfg.kafka), enable_auto_commit=False, group_id=None,
                                auto_offset_reset="earliest", max_partition_fetch_bytes=4 * 1024 * 1024)
    producer = AIOKafkaProducer(**aiokafka_kwargs(cfg.kafka)) if own_producer else None
    try:
        await consumer.start()
        if producer is not None:
            await producer.start()
    except KafkaError as exc:
        await consumer.stop()
        if producer is not None:
            await producer.stop()
        raise ReplayError(f"the broker does not answer (kafka.bootstrap_servers "
                          f"{','.join(cfg.kafka.bootstrap_servers)}): {exc}") from None
    return consumer, producer


async def make_plan(cfg: StreamConfig, start: str, until: str | None) -> ReplayPlan:
    """The offsets a replay of the sensor topic reads, fixed now (a parallel replay splits them)."""
    await asyncio.to_thread(check_settings_once, cfg)
    consumer, producer = await _open_clients(cfg, own_producer=True)
    try:
        return await plan_replay(consumer, producer, cfg.topics.sensors, start, until, cfg.window.abandon_after_s)
    finally:
        await consumer.stop()
        await producer.stop()


@dataclass
class HistoryRead:
    """What `read_history` saw: records read in the bounds, castings skipped as begun before `--from`."""

    records: int = 0
    started_before_from: int = 0


async def read_history(
    cfg: StreamConfig,
    *,
    start: str,
    until: str | None,
    handle: Callable[[list[ConsumedRecord]], Awaitable[None]],
    on_read: Callable[[int, int], None] | None = None,
    producer: AIOKafkaProducer | None = None,
    plan: ReplayPlan | None = None,
) -> HistoryRead:
    """Feed the sensor topic between `start` and `until` (default: the end offsets seen now) to `handle`, one
    fetch at a time, in partition order, leaving out castings that began before `start`. `on_read(done,
    total)` follows the records read. `producer` (started) answers the partition metadata; None: one of its own.
    `plan`: read exactly its partitions and offsets instead (a parallel replay's share; `start`/`until` unused).
    The replay and the dataset builder both read history through this."""
    consumer, own_producer = await _open_clients(cfg, own_producer=producer is None)
    read = HistoryRead()
    try:
        if plan is None:
            plan = await plan_replay(consumer, producer or own_producer, cfg.topics.sensors, start, until,
                                     cfg.window.abandon_after_s)
        active = {tp for tp in plan.start if plan.start[tp] < plan.stop[tp]}
        if plan.start:
            consumer.assign(list(plan.start))
        began_before = await keys_before_start(consumer, plan, cfg.batching.ingest_take_size)
        skipped: set[bytes] = set()
        for tp, offset in plan.start.items():
            consumer.seek(tp, offset)
        log.info("reading %d records of %s", plan.total, cfg.topics.sensors)
        report = on_read or (lambda done, total: None)
        report(0, plan.total)
        while active:
            batches = await consumer.getmany(*active, timeout_ms=1000, max_records=cfg.batching.ingest_take_size)
            records = []
            fetched = 0
            for tp, messages in batches.items():
                for m in messages:
                    if m.offset >= plan.stop[tp]:
                        continue
                    fetched += 1
                    if m.key in began_before:
                        skipped.add(m.key)
                        continue
                    records.append(m)  # aiokafka's record as it is (a ConsumedRecord), as the worker's ingest
            for tp in list(active):
                if await consumer.position(tp) >= plan.stop[tp]:
                    active.discard(tp)
            read.started_before_from = len(skipped)
            if records:
                await handle(records)
            read.records += fetched
            report(read.records, plan.total)
    finally:
        await consumer.stop()
        if own_producer is not None:
            await own_producer.stop()
    return read


async def run_replay(
    cfg: StreamConfig,
    scorer: Scorer,
    *,
    start: str = "earliest",
    until: str | None = None,
    predictions_topic: str | None = None,
    deadletter_topic: str | None = None,
    on_progress: Callable[[int, int, ReplaySummary], None] | None = None,
    plan: ReplayPlan | None = None,
) -> ReplaySummary:
    """`cfg.app_id` must differ from the live worker's (the CLI makes one) so the Redis prefix does.
    `plan`: replay exactly these partitions and offsets (one process's share of a parallel replay)."""
    predictions_topic = predictions_topic or f"{cfg.topics.predictions}.replay"
    deadletter_topic = deadletter_topic or f"{cfg.topics.deadletter}.replay"
    # refused settings: one error naming the setting; a bounded job stops on a server that is down (below)
    await asyncio.to_thread(check_settings_once, cfg)
    await asyncio.to_thread(ensure_topics, cfg, [predictions_topic, deadletter_topic])
    from stream_app.service.scoring_stage import ScoringStage

    redis = create_redis(cfg.redis)
    store = RedisWindowStore(redis, cfg.redis_prefix, cfg.redis.key_ttl_s)
    ingest = IngestStage(MessageParser(cfg.validation), store)
    threshold = scorer.threshold(cfg.model.threshold)
    producer = AIOKafkaProducer(**aiokafka_kwargs(cfg.kafka), acks="all", linger_ms=5,
                                max_request_size=4 * 1024 * 1024)
    summary = ReplaySummary()
    report = on_progress or (lambda done, total, summary: None)
    began = time.monotonic()
    await check_redis(redis)
    try:
        await producer.start()
    except KafkaError as exc:
        await producer.stop()
        await redis.aclose()
        raise ReplayError(f"the broker does not answer (kafka.bootstrap_servers "
                          f"{','.join(cfg.kafka.bootstrap_servers)}): {exc}") from None
    scorer_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")  # one forward at a time
    scoring = ScoringStage(store, scorer, cfg.window, threshold, cfg.batching.max_batch_size, scorer_thread)
    replay_scoring = _ReplayScoring(ingest, scoring, producer, predictions_topic, deadletter_topic, summary)

    def on_read(done: int, total: int) -> None:
        summary.records = done
        report(done, total, summary)

    try:
        log.info("replaying %s into %s with model %s", cfg.topics.sensors, predictions_topic, scorer.version)
        read = await read_history(cfg, start=start, until=until, handle=replay_scoring.handle,
                                  on_read=on_read, producer=producer, plan=plan)
        await replay_scoring.drain()
        summary.records, summary.started_before_from = read.records, read.started_before_from
        summary.open_at_stop = await store.open_count()
    finally:
        replay_scoring.cancel()  # after an error: what is in flight stops before the clients close
        summary.seconds = time.monotonic() - began
        await delete_prefix(redis, cfg.redis_prefix)
        await producer.stop()
        await redis.aclose()
        scorer_thread.shutdown(wait=True)
    return summary


class _ReplayScoring:
    """The replay's ingest and scoring, overlapped as in the worker: requests gather across fetches into full
    batches (`batching.max_batch_size`), which go through the worker's `ScoringPipeline` (batch N+1 fetched
    from Redis while batch N's forward runs in the scoring thread, delivered in order). The last batch of a
    fetch is still in its forward while the next fetch is read and ingested. Safe because a casting's window
    is complete once its end marker is ingested, and a reading after it is a `late_reading` by its seal,
    scored yet or not. Delivering a batch sends its outcomes, waits for the acks, then frees its windows."""

    def __init__(self, ingest: IngestStage, scoring: ScoringStage, producer: AIOKafkaProducer,
                 predictions_topic: str, deadletter_topic: str, summary: ReplaySummary) -> None:
        from stream_app.runtime.scoring_pipeline import ScoringPipeline

        self.ingest, self.scoring, self.producer, self.summary = ingest, scoring, producer, summary
        self.predictions_topic, self.deadletter_topic = predictions_topic, deadletter_topic
        self.pipeline: ScoringPipeline[None] = ScoringPipeline(scoring, self._deliver)
        self.waiting: list[ScoringRequest] = []  # ingested end markers not yet in a batch

    async def handle(self, records: list[ConsumedRecord]) -> None:
        now = time.time()
        outcome = await self.ingest.process(records, now)
        self.summary.readings += outcome.readings
        if outcome.deadletters:
            await asyncio.gather(*[await self.producer.send(self.deadletter_topic, letter.to_bytes(now),
                                                            key=letter.key) for letter in outcome.deadletters])
            self.summary.deadletters.update(letter.reason for letter in outcome.deadletters)
        self.waiting += outcome.requests
        size = self.scoring.max_batch_size
        while len(self.waiting) >= size:
            batch, self.waiting = self.waiting[:size], self.waiting[size:]
            await self.pipeline.submit(batch, None)

    async def drain(self) -> None:
        """Score what is still waiting and wait until every batch is delivered (raises a batch's error)."""
        if self.waiting:
            batch, self.waiting = self.waiting, []
            await self.pipeline.submit(batch, None)
        await self.pipeline.drain()

    def cancel(self) -> None:
        self.pipeline.cancel()

    async def _deliver(self, scored: ScoringOutcome, _token: None) -> None:
        pending = [await self.producer.send(self.predictions_topic, p, key=c.encode()) for c, p in scored.predictions]
        pending += [await self.producer.send(self.deadletter_topic, p, key=c.encode()) for c, p in scored.deadletters]
        await asyncio.gather(*pending)
        self.summary.castings_scored += len(scored.predictions)
        self.summary.deadletters.update(json.loads(p)["reason"] for _, p in scored.deadletters)
        await self.scoring.finish(scored)


async def check_redis(redis) -> None:
    """A bounded job fails at once, with a plain message, when Redis does not answer (the worker waits instead)."""
    try:
        await ping_redis(redis)  # every master of a cluster
    except (RedisError, RedisClusterException) as exc:
        await redis.aclose()
        raise ReplayError(f"Redis does not answer (redis.url): {exc}") from None


async def delete_prefix(redis, prefix: str) -> None:
    """Every key of the prefix. On a cluster, SCAN walks every master (redis-py's cluster `scan_iter`) and
    DEL is split per slot by the cluster client."""
    keys = [key async for key in redis.scan_iter(match=f"{prefix}:*", count=1000)]
    for i in range(0, len(keys), 1000):
        await redis.delete(*keys[i : i + 1000])
