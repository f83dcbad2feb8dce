"""The faust app: the one module that wires Kafka to the stages, and the only one importing faust.

Stages return what must happen; this module sends it (`FaustOutputs`), acknowledges, and records the
metrics, so control flows one way: records -> stage -> outcome -> sends -> commit/ack.
Its parts: the ingest loop (`IngestLoop`, a plain aiokafka consumer group run as an app task; see its
module for why), the scoring agent, the abandonment sweep (timer), the checkpoint watch (timer; see
`model_swap`) and the readiness probe.

The ingest loop commits a fetch's offsets only after its scoring requests and dead letters are acknowledged
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
from stream_app.runtime.connections import create_redis, faust_broker_credentials, ping_redis
from stream_app.runtime.heap import settle_heap
from stream_app.runtime.ingest_loop import IngestLoop
from stream_app.runtime.kafka_readiness import KafkaReadiness
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.model_swap import FileSignature, ModelWatcher
from stream_app.runtime.outages import Dependency, RetryingWindowStore, is_outage, quiet_client_loggers
from stream_app.runtime.scoring_pipeline import ScoringPipeline
from stream_app.service.ingest_stage import IngestOutcome, IngestStage
from stream_app.service.messages import MessageParser
from stream_app.service.model_runner import Scorer
from stream_app.service.records import DeadLetter, ScoringRequest
from stream_app.service.redis_window_store import RedisWindowStore
from stream_app.service.scoring_stage import ScoringOutcome, ScoringStage
from stream_app.service.sweep import claim_abandoned, close_abandoned

log = logging.getLogger(__name__)


def scoring_topic_name(cfg: StreamConfig) -> str:
    return f"{cfg.app_id}.scoring-requests"


@dataclass
class WorkerPipeline:
    """The stages of one worker process and what they share: built once, wired into the faust app."""

    cfg: StreamConfig
    metrics: Metrics
    store: RedisWindowStore
    ingest: IngestStage  # on the plain store: the ingest loop retries whole batches
    scoring: ScoringStage  # on the patient store: each call waits out Redis outages
    patient_store: RetryingWindowStore  # the sweep's too
    redis: Dependency
    kafka: Dependency
    running: set[str] = field(default_factory=set)  # the loops that have started: ingest, scoring
    checkpoint_signature: FileSignature = None  # of the file the serving model was loaded from

    def health(self) -> dict:
        """What `/health` answers: ready when both dependencies answer and both loops run."""
        ready = self.redis.ready and self.kafka.ready and {"ingest", "scoring"} <= self.running
        now = time.monotonic()

        def state(dep: Dependency) -> str:
            return "up" if dep.ready else f"down for {now - (dep.down_since or now):.1f}s"

        return {"ready": ready, "redis": state(self.redis), "kafka": state(self.kafka),
                "running": sorted(self.running)}


def dependency(name: str, cfg: StreamConfig, metrics: Metrics) -> Dependency:
    return Dependency.from_config(name, cfg.resilience, up_gauge=metrics.dependency_up.labels(name),
                                  outage_seconds=metrics.outage_seconds.labels(name))


def build_pipeline(
    cfg: StreamConfig, scorer: Scorer, metrics: Metrics, checkpoint_signature: FileSignature = None
) -> WorkerPipeline:
    """`checkpoint_signature`: `model_swap.file_signature` of the checkpoint, taken before it was loaded."""
    store = RedisWindowStore(create_redis(cfg.redis), cfg.redis_prefix, cfg.redis.key_ttl_s)
    redis, kafka = dependency("redis", cfg, metrics), dependency("kafka", cfg, metrics)
    patient = RetryingWindowStore(store, redis)
    # one thread: torch parallelises inside a forward, and the pipeline keeps the next batch's fetch
    # busy meanwhile; the model call is stateless, so more threads would be safe
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")
    return WorkerPipeline(
        cfg=cfg,
        metrics=metrics,
        store=store,
        ingest=IngestStage(MessageParser(cfg.validation), store),
        scoring=ScoringStage(patient, scorer, cfg.window, scorer.threshold(cfg.model.threshold),
                             cfg.batching.max_batch_size, executor),
        patient_store=patient,
        redis=redis,
        kafka=kafka,
        checkpoint_signature=checkpoint_signature,
    )


class FaustOutputs:
    """The worker's sends, each returning once the broker has acknowledged everything it sent and
    waiting out broker outages (a resend after a failure carries the same bytes)."""

    def __init__(self, app: faust.App, cfg: StreamConfig, kafka: Dependency) -> None:
        # faust creates this one itself (internal): the same replication and min.insync.replicas as ours
        self.requests = app.topic(scoring_topic_name(cfg), key_type=bytes, value_type=bytes, internal=True,
                                  partitions=cfg.topics.partitions, replicas=cfg.topics.replication_factor,
                                  config=cfg.topics.topic_configs() or None)
        self.predictions = app.topic(cfg.topics.predictions, key_type=bytes, value_type=bytes)
        self.deadletter = app.topic(cfg.topics.deadletter, key_type=bytes, value_type=bytes)
        self.kafka = kafka

    async def send_ingest(self, outcome: IngestOutcome, now: float) -> None:
        """Scoring requests and dead letters of an ingest batch (the ingest loop waits out outages itself)."""
        pending = [await self.requests.send(key=r.casting_id.encode(), value=r.to_bytes()) for r in outcome.requests]
        pending += [await self.deadletter.send(key=letter.key or b"", value=letter.to_bytes(now))
                    for letter in outcome.deadletters]
        await asyncio.gather(*pending)

    async def send_scoring(self, outcome: ScoringOutcome) -> None:
        async def send_all() -> None:
            pending = [await self.predictions.send(key=c.encode(), value=p) for c, p in outcome.predictions]
            pending += [await self.deadletter.send(key=c.encode(), value=p) for c, p in outcome.deadletters]
            await asyncio.gather(*pending)

        await self.kafka.call(send_all, "sending predictions")

    async def send_deadletters(self, letters: list[DeadLetter], now: float) -> None:
        async def send_all() -> None:
            await asyncio.gather(*[await self.deadletter.send(key=letter.key or b"", value=letter.to_bytes(now))
                                   for letter in letters])

        await self.kafka.call(send_all, "sending dead letters")


def create_app(pipeline: WorkerPipeline, datadir: Path | None = None) -> faust.App:
    cfg = pipeline.cfg
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
    outputs = FaustOutputs(app, cfg, pipeline.kafka)
    metrics = pipeline.metrics
    ingest = IngestLoop(cfg, pipeline.ingest, outputs.send_ingest, metrics, pipeline.redis, pipeline.kafka)

    @app.task
    async def consume_sensors() -> None:
        quiet_client_loggers()  # here: faust has set up logging by now
        settle_heap()  # the model is loaded and faust started: what exists now lives as long as the worker
        pipeline.running.add("ingest")
        try:
            await ingest.run()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug, not an outage (those are waited out): stop the worker loudly
            log.exception("ingest loop failed; stopping the worker")
            await app.crash(exc)
        finally:
            pipeline.running.discard("ingest")

    @app.on_before_shutdown.connect
    async def finish_ingest(sender: faust.App, **kwargs: object) -> None:
        # faust stops its producer before it cancels its tasks: the batch in hand must finish first,
        # or its sends fail with NotReady and the worker exits 1 instead of 0
        await ingest.stop()

    @app.agent(outputs.requests, concurrency=1)
    async def score(stream: faust.StreamT) -> None:
        async def deliver(outcome: ScoringOutcome, events: list[faust.EventT]) -> None:
            await outputs.send_scoring(outcome)
            await pipeline.scoring.finish(outcome)
            metrics.record_scoring(outcome.stats, cfg.batching.max_batch_size)
            for event in events:
                await stream.ack(event)

        take = stream.noack_take(cfg.batching.max_batch_size, within=cfg.batching.max_wait_ms / 1000.0)
        batches = ScoringPipeline(pipeline.scoring, deliver)  # batch N+1's fetch overlaps batch N's forward
        pipeline.running.add("scoring")
        try:
            async for events in take:
                requests = []
                for event in events:
                    try:
                        requests.append(ScoringRequest.from_bytes(event.message.value))
                    except (ValueError, KeyError, TypeError):  # written by us; only a foreign producer gets here
                        log.error("unreadable scoring request at offset %d; skipped", event.message.offset)
                await batches.submit(requests, events)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # faust would restart the agent with this batch's requests held and never acked: stop the
            # worker instead; a restarted worker reads them again (at-least-once, identical duplicates)
            log.exception("scoring agent failed; stopping the worker")
            await app.crash(exc)
        finally:
            pipeline.running.discard("scoring")
            batches.cancel()  # what is in flight stays unacked and is consumed again

    @app.timer(interval=cfg.window.sweep_interval_s)
    async def sweep() -> None:
        now = time.time()
        letters = await claim_abandoned(pipeline.patient_store, now, cfg.window.abandon_after_s, cfg.topics.sensors)
        if letters:
            await outputs.send_deadletters(letters, now)
            await close_abandoned(pipeline.patient_store, letters)
            metrics.deadletters.labels("incomplete").inc(len(letters))
        metrics.open_castings.set(await pipeline.patient_store.open_count())

    if cfg.model.watch_interval_s > 0:
        watcher = ModelWatcher(cfg, pipeline.scoring, metrics, signature=pipeline.checkpoint_signature)

        @app.timer(interval=cfg.model.watch_interval_s)
        async def watch_model() -> None:
            await watcher.check()
    else:
        metrics.set_model(pipeline.scoring.scorer.version)

    # read: the sensors and the scoring requests; written: the scoring requests and both outputs
    kafka_readiness = KafkaReadiness(cfg, read_topics=[cfg.topics.sensors],
                                     write_topics=[scoring_topic_name(cfg), cfg.topics.predictions,
                                                   cfg.topics.deadletter])

    @app.task
    async def probe() -> None:
        """Readiness while nothing else calls: ask Redis and the broker every `probe_interval_s` (the broker:
        do the partitions we use have leaders and enough in-sync replicas that answer; `kafka_readiness`)."""
        interval = cfg.resilience.probe_interval_s
        try:
            while True:
                await asyncio.sleep(interval)
                await _probe(pipeline.redis, lambda: ping_redis(pipeline.store.client), interval)
                if ingest.consumer is not None:
                    await _probe(pipeline.kafka, kafka_readiness.check, interval)
        finally:
            await kafka_readiness.close()

    return app


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
        dep.probe_succeeded()  # not while a send or a write of this dependency is still being retried
