"""The ingest loop: `casting.sensors` -> IngestStage, read by a plain aiokafka consumer group.

Why not a faust agent: faust hands an agent its records one at a time (per record: two tasks and an
`asyncio.wait` in its fetcher, a channel queue, the stream iterator), about 80 µs per record on the
reference machine, six times the work of parsing and writing the record. With one reading per message
that held ingest to 0.16 of a plain loop (docs/BENCHMARKS.md §2). Here what one fetch returns is one
batch, handed to the same IngestStage the replay uses. Scoring stays a faust agent.

Delivery: a batch's offsets are committed only after its window writes are done and the scoring
requests and dead letters it produced are acknowledged by the broker, so a crash or SIGTERM anywhere
before the commit re-reads the batch (at-least-once; the writes are idempotent). A rebalance waits
for the batch in hand to be committed (the listener takes the same lock), so a partition's next owner
starts where this one stopped. A batch that fails (Redis or the broker unreachable) is read again
from its first offsets after a pause; nothing is skipped and the loop keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError
from redis.exceptions import RedisError

from stream_app.config import StreamConfig
from stream_app.connections import aiokafka_kwargs
from stream_app.ingest import IngestOutcome, IngestStage
from stream_app.records import SourceRecord

log = logging.getLogger(__name__)

#: sends what a batch produced and returns once the broker has acknowledged all of it
SendOutcome = Callable[[IngestOutcome, float], Awaitable[None]]


def ingest_group_id(cfg: StreamConfig) -> str:
    """The sensor topic's consumer group (faust's own group, `app_id`, consumes the scoring requests)."""
    return f"{cfg.app_id}.ingest"


class IngestConsumer(ConsumerRebalanceListener):
    def __init__(self, cfg: StreamConfig, stage: IngestStage, send: SendOutcome, retry_pause_s: float = 1.0) -> None:
        self.cfg = cfg
        self.stage = stage
        self.send = send
        self.retry_pause_s = retry_pause_s
        self._batch_lock = asyncio.Lock()

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
        await consumer.start()
        log.info("ingest consuming %s in group %s", self.cfg.topics.sensors, ingest_group_id(self.cfg))
        batching = self.cfg.batching
        try:
            while True:
                batches = await consumer.getmany(
                    timeout_ms=int(batching.ingest_take_timeout_s * 1000), max_records=batching.ingest_take_size
                )
                if batches and not await self._handle(consumer, batches):
                    await asyncio.sleep(self.retry_pause_s)
        finally:
            await consumer.stop()

    async def _handle(self, consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list]) -> bool:
        """Process and commit one fetch; False (after seeking back) when it has to be read again."""
        async with self._batch_lock:
            records = [SourceRecord(m.topic, m.partition, m.offset, m.key, m.value)
                       for messages in batches.values() for m in messages]
            try:
                now = time.time()
                await self.send(await self.stage.process(records, now), now)
            except (TimeoutError, RedisError, KafkaError, OSError) as exc:
                log.error("ingest batch of %d records failed (%s: %s); reading it again in %.0f s",
                          len(records), type(exc).__name__, exc, self.retry_pause_s)
                for tp, messages in batches.items():
                    with contextlib.suppress(IllegalStateError):  # moved to another worker: it re-reads them
                        consumer.seek(tp, messages[0].offset)
                self.stage.metrics.ingest_retries.inc()
                return False
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
        return True

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self._batch_lock:  # let the batch in hand finish and commit before the partitions move
            pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("ingest assigned %s", ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(assigned)) or "nothing")
