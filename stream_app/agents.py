"""The faust app: the ingest loop, the scoring agent, the abandonment sweep. The only module that imports faust.

The ingest loop (`IngestConsumer`, a plain aiokafka consumer group run as an app task; see its module
for why) commits a fetch's offsets only after its scoring requests and dead letters are acknowledged
by the broker. The scoring agent takes micro-batches with `noack_take`, keeps two in flight
(`ScoringPipeline`) and acks a batch's records only after its predictions are acknowledged and its
windows freed. A crash or SIGTERM at any point leaves the batch uncommitted, so it is consumed again
(at-least-once); the stages make the re-run harmless (idempotent writes, stored outcomes re-sent
byte for byte).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import faust

from stream_app.config import StreamConfig
from stream_app.connections import create_redis, faust_broker_credentials
from stream_app.ingest import IngestOutcome, IngestStage
from stream_app.ingest_consumer import IngestConsumer
from stream_app.messages import MessageParser
from stream_app.metrics import Metrics
from stream_app.predict import ScoringOutcome, ScoringPipeline, ScoringStage
from stream_app.records import DeadLetter, ScoringRequest
from stream_app.scoring import Scorer
from stream_app.window_store import RedisWindowStore

log = logging.getLogger(__name__)


SWEEP_CLAIM_HOLD_S = 60  # a sweep's claim on a casting outlives any normal send; then a later sweep retries


def scoring_topic_name(cfg: StreamConfig) -> str:
    return f"{cfg.app_id}.scoring-requests"


@dataclass
class WorkerParts:
    """What the agents share; built once per process."""

    cfg: StreamConfig
    metrics: Metrics
    store: RedisWindowStore
    ingest: IngestStage
    scoring: ScoringStage


def build_parts(cfg: StreamConfig, scorer: Scorer, metrics: Metrics) -> WorkerParts:
    store = RedisWindowStore(create_redis(cfg.redis), cfg.redis_prefix, cfg.redis.key_ttl_s)
    # one thread: the model is not re-entrant (it keeps the last attention) and torch parallelises inside
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")
    return WorkerParts(
        cfg=cfg,
        metrics=metrics,
        store=store,
        ingest=IngestStage(MessageParser(cfg.validation), store, metrics),
        scoring=ScoringStage(store, scorer, cfg.window, scorer.threshold(cfg.model.threshold),
                             cfg.batching.max_batch_size, metrics, executor),
    )


def create_app(parts: WorkerParts, datadir: Path | None = None) -> faust.App:
    cfg = parts.cfg
    app = faust.App(
        cfg.app_id,
        broker=cfg.kafka.broker_urls(),
        broker_credentials=faust_broker_credentials(cfg.kafka),
        datadir=str(datadir or Path(tempfile.gettempdir()) / f"faust-{cfg.app_id}"),
        key_serializer="raw",
        value_serializer="raw",
        web_enabled=False,
        topic_partitions=cfg.topics.partitions,
        topic_replication_factor=cfg.topics.replication_factor,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        broker_commit_interval=1.0,
        broker_session_timeout=cfg.kafka.session_timeout_s,
        broker_heartbeat_interval=cfg.kafka.heartbeat_interval_s,
        broker_rebalance_timeout=cfg.kafka.rebalance_timeout_s,
        # faust's default (1 MiB per partition) leaves the worker waiting on fetches (docs/BENCHMARKS.md)
        consumer_max_fetch_size=cfg.kafka.max_partition_fetch_bytes,
    )
    requests_topic = app.topic(
        scoring_topic_name(cfg), key_type=bytes, value_type=bytes, internal=True,
        partitions=cfg.topics.partitions,
    )
    predictions = app.topic(cfg.topics.predictions, key_type=bytes, value_type=bytes)
    deadletter = app.topic(cfg.topics.deadletter, key_type=bytes, value_type=bytes)

    async def send_deadletters(letters: list[DeadLetter], now: float) -> list:
        return [
            await deadletter.send(key=letter.key or b"", value=letter.to_bytes(now)) for letter in letters
        ]

    async def send_ingest_outcome(outcome: IngestOutcome, now: float) -> None:
        pending = [
            await requests_topic.send(key=r.casting_id.encode(), value=r.to_bytes()) for r in outcome.requests
        ]
        pending += await send_deadletters(outcome.deadletters, now)
        await asyncio.gather(*pending)  # broker acks before the offsets are committed

    ingest = IngestConsumer(cfg, parts.ingest, send_ingest_outcome)

    @app.task
    async def consume_sensors() -> None:
        try:
            await ingest.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, not an outage (those are retried): stop the worker loudly
            log.exception("ingest loop failed; stopping the worker")
            await app.crash(exc)

    @app.agent(requests_topic, concurrency=1)
    async def score(stream: faust.StreamT) -> None:
        async def deliver(outcome: ScoringOutcome, events: list[faust.EventT]) -> None:
            pending = [await predictions.send(key=c.encode(), value=p) for c, p in outcome.predictions]
            pending += [await deadletter.send(key=c.encode(), value=p) for c, p in outcome.deadletters]
            await asyncio.gather(*pending)
            await parts.scoring.finish(outcome)
            for event in events:
                await stream.ack(event)

        take = stream.noack_take(cfg.batching.max_batch_size, within=cfg.batching.max_wait_ms / 1000.0)
        pipeline = ScoringPipeline(parts.scoring, deliver)  # batch N+1's fetch overlaps batch N's forward
        try:
            async for events in take:
                requests = []
                for event in events:
                    try:
                        requests.append(ScoringRequest.from_bytes(event.message.value))
                    except (ValueError, KeyError, TypeError):  # written by us; only a foreign producer gets here
                        log.error("unreadable scoring request at offset %d; skipped", event.message.offset)
                await pipeline.submit(requests, events)
        finally:
            pipeline.cancel()  # what is in flight stays unacked and is consumed again

    @app.timer(interval=cfg.window.sweep_interval_s)
    async def sweep_abandoned() -> None:
        now = time.time()
        stale = await parts.store.stale(now - cfg.window.abandon_after_s)
        # with several workers each casting is claimed by one; it leaves the sweep list only after its dead
        # letter is acknowledged, so a crash in between leaves it to a later sweep (at-least-once)
        claimed = await parts.store.claim(stale, hold_s=SWEEP_CLAIM_HOLD_S)
        if claimed:
            letters = [
                DeadLetter("incomplete", f"no end marker within {cfg.window.abandon_after_s:g}s",
                           {"topic": cfg.topics.sensors, "partition": None, "offset": None},
                           c.encode(), None, c)
                for c in claimed
            ]
            await asyncio.gather(*await send_deadletters(letters, now))
            await parts.store.free(claimed)
            parts.metrics.deadletters.labels("incomplete").inc(len(claimed))
            log.warning("dead-lettered %d abandoned casting(s): %s", len(claimed), ", ".join(claimed[:10]))
        parts.metrics.open_castings.set(await parts.store.open_count())

    return app
