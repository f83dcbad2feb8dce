"""The faust app: the ingest loop, the scoring agent, the abandonment sweep, the health probe.
The only module that imports faust.

The ingest loop (`IngestConsumer`, a plain aiokafka consumer group run as an app task; see its module
for why) commits a fetch's offsets only after its scoring requests and dead letters are acknowledged
by the broker. The scoring agent takes micro-batches with `noack_take`, keeps two in flight
(`ScoringPipeline`) and acks a batch's records only after its predictions are acknowledged and its
windows freed. A crash or SIGTERM at any point leaves the batch uncommitted, so it is consumed again
(at-least-once); the stages make the re-run harmless (seals, stored outcomes re-sent byte for byte).

Outages of Redis or the broker are waited out where they happen (`outages.Dependency`): the batch in
hand stays unacknowledged and is retried with backoff; nothing crashes, nothing is skipped. Anything
else that escapes the scoring agent is a bug: the worker stops (non-zero) rather than carrying on with
requests held and never acknowledged; its replacement reads them again.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import faust

from stream_app.config import StreamConfig
from stream_app.runtime.connections import create_redis, faust_broker_credentials
from stream_app.runtime.ingest_loop import IngestConsumer
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.outages import Dependency, is_outage, quiet_client_loggers
from stream_app.service.ingest_stage import IngestOutcome, IngestStage
from stream_app.service.messages import MessageParser
from stream_app.service.model_runner import Scorer
from stream_app.service.records import DeadLetter, ScoringRequest
from stream_app.service.scoring_stage import ScoringOutcome, ScoringPipeline, ScoringStage
from stream_app.service.sweep import sweep_abandoned
from stream_app.service.window_store import RedisWindowStore

log = logging.getLogger(__name__)


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
    redis: Dependency
    kafka: Dependency
    running: set[str] = field(default_factory=set)  # the loops that have started: ingest, scoring

    def health(self) -> dict:
        """What `/health` answers: ready when both dependencies answer and both loops run."""
        ready = self.redis.ready and self.kafka.ready and {"ingest", "scoring"} <= self.running
        now = time.monotonic()

        def state(dep: Dependency) -> str:
            return "up" if dep.ready else f"down for {now - (dep.down_since or now):.1f}s"

        return {"ready": ready, "redis": state(self.redis), "kafka": state(self.kafka),
                "running": sorted(self.running)}


def dependency(name: str, cfg: StreamConfig, metrics: Metrics) -> Dependency:
    return Dependency(name, initial_wait_s=cfg.resilience.retry_initial_s, max_wait_s=cfg.resilience.retry_max_s,
                      up_gauge=metrics.dependency_up.labels(name), outage_seconds=metrics.outage_seconds.labels(name))


def build_parts(cfg: StreamConfig, scorer: Scorer, metrics: Metrics) -> WorkerParts:
    store = RedisWindowStore(create_redis(cfg.redis), cfg.redis_prefix, cfg.redis.key_ttl_s)
    redis, kafka = dependency("redis", cfg, metrics), dependency("kafka", cfg, metrics)
    # one thread: the model is not re-entrant (it keeps the last attention) and torch parallelises inside
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")
    return WorkerParts(
        cfg=cfg,
        metrics=metrics,
        store=store,
        ingest=IngestStage(MessageParser(cfg.validation), store, metrics),
        scoring=ScoringStage(store, scorer, cfg.window, scorer.threshold(cfg.model.threshold),
                             cfg.batching.max_batch_size, metrics, executor, redis=redis),
        redis=redis,
        kafka=kafka,
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
        consumer_max_fetch_size=cfg.kafka.max_partition_fetch_bytes,
    )
    requests_topic = app.topic(
        scoring_topic_name(cfg), key_type=bytes, value_type=bytes, internal=True,
        partitions=cfg.topics.partitions,
    )
    predictions = app.topic(cfg.topics.predictions, key_type=bytes, value_type=bytes)
    deadletter = app.topic(cfg.topics.deadletter, key_type=bytes, value_type=bytes)
    kafka = parts.kafka

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

    ingest = IngestConsumer(cfg, parts.ingest, send_ingest_outcome, parts.redis, kafka)

    @app.task
    async def consume_sensors() -> None:
        quiet_client_loggers()  # here: faust has set up logging by now
        parts.running.add("ingest")
        try:
            await ingest.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, not an outage (those are waited out): stop the worker loudly
            log.exception("ingest loop failed; stopping the worker")
            await app.crash(exc)
        finally:
            parts.running.discard("ingest")

    @app.agent(requests_topic, concurrency=1)
    async def score(stream: faust.StreamT) -> None:
        async def deliver(outcome: ScoringOutcome, events: list[faust.EventT]) -> None:
            async def send_all() -> None:
                pending = [await predictions.send(key=c.encode(), value=p) for c, p in outcome.predictions]
                pending += [await deadletter.send(key=c.encode(), value=p) for c, p in outcome.deadletters]
                await asyncio.gather(*pending)

            await kafka.call(send_all, "sending predictions")  # a resend after a failure carries the same bytes
            await parts.scoring.finish(outcome)
            for event in events:
                await stream.ack(event)

        take = stream.noack_take(cfg.batching.max_batch_size, within=cfg.batching.max_wait_ms / 1000.0)
        pipeline = ScoringPipeline(parts.scoring, deliver)  # batch N+1's fetch overlaps batch N's forward
        parts.running.add("scoring")
        try:
            async for events in take:
                requests = []
                for event in events:
                    try:
                        requests.append(ScoringRequest.from_bytes(event.message.value))
                    except (ValueError, KeyError, TypeError):  # written by us; only a foreign producer gets here
                        log.error("unreadable scoring request at offset %d; skipped", event.message.offset)
                await pipeline.submit(requests, events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # faust would restart the agent with this batch's requests held and never acked: stop the
            # worker instead; a restarted worker reads them again (at-least-once, identical duplicates)
            log.exception("scoring agent failed; stopping the worker")
            await app.crash(exc)
        finally:
            parts.running.discard("scoring")
            pipeline.cancel()  # what is in flight stays unacked and is consumed again

    @app.timer(interval=cfg.window.sweep_interval_s)
    async def sweep() -> None:
        async def send(letters: list[DeadLetter], now: float) -> None:
            await kafka.call(lambda: _gather(send_deadletters(letters, now)), "sweep dead letters")

        swept = await sweep_abandoned(parts.store, cfg.window.abandon_after_s, cfg.topics.sensors, time.time(),
                                      send, redis=parts.redis)
        if swept:
            parts.metrics.deadletters.labels("incomplete").inc(len(swept))
        parts.metrics.open_castings.set(await parts.redis.call(parts.store.open_count, "open castings"))

    @app.task
    async def probe() -> None:
        """Readiness while nothing else calls: ask Redis and the broker every `probe_interval_s`."""
        interval = cfg.resilience.probe_interval_s
        while True:
            await asyncio.sleep(interval)
            await _probe(parts.redis, lambda: parts.store.client.ping(), interval)
            if ingest.consumer is not None:
                await _probe(kafka, ingest.consumer.topics, interval)

    return app


async def _gather(sends) -> None:
    await asyncio.gather(*await sends)


async def _probe(dep: Dependency, ask, interval_s: float) -> None:
    try:
        await asyncio.wait_for(ask(), timeout=max(1.0, 2 * interval_s))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        if not is_outage(exc):
            raise
        dep.failed(exc, "health probe")
    else:
        dep.succeeded()
