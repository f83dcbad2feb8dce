"""The ingest loop: `casting.sensors` -> IngestStage, read by a plain aiokafka consumer group.

Not a faust agent: faust hands an agent its records one at a time, several times the cost of parsing
and writing a record (docs/ARCHITECTURE.md, "Ingest is not a faust agent"). Here one fetch is one
batch, handed to the same IngestStage the replay uses. Scoring stays a faust agent.

Delivery: a batch's offsets are committed only after its window writes are done and the scoring
requests and dead letters it produced are acknowledged by the broker, so a crash or SIGTERM anywhere
before the commit re-reads the batch (at-least-once; the writes are idempotent). A rebalance waits
for the batch in hand to be committed (the listener takes the same lock), so a partition's next owner
starts where this one stopped. A batch that meets an outage (Redis or the broker unreachable) waits
in hand, retried with backoff (`outages.Dependency`), until the outage ends; nothing is skipped and the
loop keeps running. If the group takes the batch's partitions away meanwhile, the batch is dropped
uncommitted and its next owner reads it.

Shutdown: `stop` is called while the worker's producer still runs (faust stops its producer before
it cancels its tasks). It lets the batch in hand finish and commit (one waiting out an outage is
handed back uncommitted), and the loop takes no further batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from itertools import chain

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from stream_app.config import StreamConfig
from stream_app.runtime.connections import aiokafka_kwargs
from stream_app.runtime.metrics import Metrics
from stream_app.runtime.outages import Dependency, OutageAbandoned, is_outage
from stream_app.service.ingest_stage import IngestOutcome, IngestStage

log = logging.getLogger(__name__)

#: sends what a batch produced and returns once the broker has acknowledged all of it
SendOutcome = Callable[[IngestOutcome, float], Awaitable[None]]


def ingest_group_id(cfg: StreamConfig) -> str:
    """The sensor topic's consumer group (faust's own group, `app_id`, consumes the scoring requests)."""
    return f"{cfg.app_id}.ingest"


class IngestLoop(ConsumerRebalanceListener):
    """casting.sensors fetches -> IngestStage -> `send` (the wiring's) -> commit; records the metrics."""

    def __init__(self, cfg: StreamConfig, stage: IngestStage, send: SendOutcome, metrics: Metrics,
                 redis: Dependency, kafka: Dependency) -> None:
        self.cfg = cfg
        self.stage = stage
        self.send = send
        self.metrics = metrics
        self.redis = redis
        self.kafka = kafka
        self.consumer: AIOKafkaConsumer | None = None  # set while running (the health probe asks it)
        self._batch_lock = asyncio.Lock()
        self._revoking = False
        self._stopping = False

    def create_consumer(self) -> AIOKafkaConsumer:
        kafka = self.cfg.kafka
        return AIOKafkaConsumer(
            **aiokafka_kwargs(kafka),
            group_id=ingest_group_id(self.cfg),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=kafka.max_partition_fetch_bytes,
            session_timeout_ms=int(kafka.session_timeout_s * 1000),
            heartbeat_interval_ms=int(kafka.heartbeat_interval_s * 1000),
            rebalance_timeout_ms=int(kafka.rebalance_timeout_s * 1000),
        )

    async def run(self) -> None:
        """Consume until cancelled; leaves the group on the way out."""
        consumer = self.create_consumer()
        consumer.subscribe([self.cfg.topics.sensors], listener=self)
        await self.kafka.call(consumer.start, "ingest consumer start")
        self.consumer = consumer
        log.info("ingest consuming %s in group %s", self.cfg.topics.sensors, ingest_group_id(self.cfg))
        batching = self.cfg.batching
        try:
            while not self._stopping:
                batches = await consumer.getmany(
                    timeout_ms=int(batching.ingest_take_timeout_s * 1000), max_records=batching.ingest_take_size
                )
                # a fetch that arrives after `stop` stays uncommitted: its sends would find the producer gone
                if batches and not self._stopping:
                    await self._handle(consumer, batches)
        finally:
            self.consumer = None
            # leaving the group needs the broker; during an outage do not hold up the shutdown for it
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.stop(), timeout=5)

    async def _handle(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list]) -> None:
        """Process, send and commit one fetch, waiting out outages; an abandoned batch is sought back."""
        async with self._batch_lock:
            records = list(chain.from_iterable(batches.values()))  # aiokafka's records, not copied (ConsumedRecord)
            now = time.time()
            try:
                retried = self.metrics.ingest_retries.inc
                outcome = await self.redis.call(lambda: self.stage.process(records, now), "ingest",
                                                give_up=self._given_up, on_failure=retried)
                await self.kafka.call(lambda: self.send(outcome, now), "ingest sends", give_up=self._given_up,
                                      on_failure=retried)
            except Exception as exc:
                if not (isinstance(exc, OutageAbandoned) or is_outage(exc)):
                    raise
                # the partitions are being revoked or the worker is stopping: the next owner reads it again
                reason = "the worker is stopping" if self._stopping else "partitions revoked"
                log.warning("ingest batch of %d records handed back uncommitted (%s during an outage)",
                            len(records), reason)
                for tp, messages in batches.items():
                    with contextlib.suppress(IllegalStateError):
                        consumer.seek(tp, messages[0].offset)
                return
            self.metrics.record_ingest(outcome)
            try:
                await consumer.commit({tp: messages[-1].offset + 1 for tp, messages in batches.items()})
            except (CommitFailedError, IllegalStateError) as exc:
                # the group moved these partitions on (this worker was too slow or lost its session); their
                # next owner reads the batch again from the last commit, and the writes are idempotent
                log.warning("ingest commit of %d records refused (%s); the partitions' next owner re-reads them",
                            len(records), exc)
            except KafkaError as exc:
                # processed, not committed: the partitions' next commit covers them; until then a crash or a
                # rebalance re-reads them, which the idempotent writes make harmless
                log.warning("ingest commit of %d records failed (%s: %s); a later commit covers them",
                            len(records), type(exc).__name__, exc)

    async def stop(self) -> None:
        """Take no further batch and return once the one in hand is committed or handed back."""
        self._stopping = True
        async with self._batch_lock:
            pass

    def _given_up(self) -> bool:
        return self._revoking or self._stopping

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # let the batch in hand finish and commit before the partitions move; one waiting out an outage
        # stops waiting (`_given_up`) and is left uncommitted for the next owner
        self._revoking = True
        try:
            async with self._batch_lock:
                pass
        finally:
            self._revoking = False

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("ingest assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "nothing")
