"""The dashboard's own reader of the line: `casting.sensors`, `casting.predictions` and `casting.deadletter`.

A plain aiokafka consumer WITHOUT a consumer group: it commits nothing and takes nothing from the worker's
groups; it starts at the end of each topic (the page shows what happens from its start on) and follows new
partitions as metadata refreshes. Malformed records are counted and skipped; a broker outage is waited out
(the consumer keeps its positions in memory and resumes where it stopped).

It probes the broker every `PROBE_S` (the page and /health say when it is unreachable) and measures the
worker's ingest lag on the sensor topic (end offsets minus the group's committed
offsets), cheaply, every `LAG_INTERVAL_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from stream_app.config import StreamConfig
from stream_app.errors import RejectedInput
from stream_app.runtime.connections import aiokafka_kwargs
from stream_app.runtime.dashboard_metrics import DashboardMetrics
from stream_app.service.line_view import BadPrediction, LineView, parse_prediction
from stream_app.service.messages import EndMarker, MessageParser

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 10.0
PROBE_S = 2.0
PROBE_TIMEOUT_S = 5.0
RETRY_S = 2.0


def worker_ingest_group(cfg: StreamConfig) -> str:
    """The worker's ingest group (`ingest_loop.ingest_group_id`, which a unit test holds this to): spelled out
    here because importing the ingest loop loads the scoring stack (torch, ~500 MiB) into the page's server."""
    return cfg.dashboard.lag_group or f"{cfg.app_id}.ingest"


class LineFeed:
    """Consumes the three topics into a `LineView` until cancelled."""

    def __init__(self, cfg: StreamConfig, view: LineView, metrics: DashboardMetrics) -> None:
        self.cfg = cfg
        self.view = view
        self.metrics = metrics
        self.parser = MessageParser(cfg.validation)
        self.connected = False  # the last fetch reached the broker (the health endpoint reports it)

    def create_consumer(self) -> AIOKafkaConsumer:
        kwargs = aiokafka_kwargs(self.cfg.kafka)
        kwargs["client_id"] = f"{self.cfg.kafka.client_id}-dashboard"
        return AIOKafkaConsumer(
            **kwargs,
            group_id=None,  # no group: nothing committed, no partitions taken from anyone
            enable_auto_commit=False,
            auto_offset_reset="latest",
            metadata_max_age_ms=10_000,  # topics created after the start are found within seconds
            max_partition_fetch_bytes=self.cfg.kafka.max_partition_fetch_bytes,
        )

    async def run(self) -> None:
        topics = self.cfg.topics
        while True:  # a consumer that fails to start (broker down) is tried again
            consumer = self.create_consumer()
            try:
                await consumer.start()
                consumer.subscribe([topics.sensors, topics.predictions, topics.deadletter])
                log.info("dashboard following %s, %s and %s (no consumer group)",
                         topics.sensors, topics.predictions, topics.deadletter)
                await self._follow(consumer)
            except KafkaError as exc:
                self.connected = False
                log.warning("dashboard feed: broker unreachable (%s: %s); retrying in %.0fs",
                            type(exc).__name__, exc, RETRY_S)
                await asyncio.sleep(RETRY_S)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), timeout=5)

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        watch = asyncio.create_task(self._watch_broker(consumer))
        try:
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5000)
                now = time.time()
                for tp, records in batches.items():
                    for record in records:
                        self.handle(tp.topic, record.key, record.value, now)
        finally:
            watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watch

    def handle(self, topic: str, key: bytes | None, value: bytes | None, now: float) -> None:
        """One record into the view; a malformed one is counted by topic and skipped."""
        topics = self.cfg.topics
        if topic == topics.sensors:
            try:
                message = self.parser.parse(key, value)
            except RejectedInput:  # the worker dead-letters it; the page counts those from the dead-letter topic
                self.metrics.malformed.labels("sensors").inc()
                return
            if isinstance(message, EndMarker):
                self.metrics.end_markers_seen.inc()
            else:
                self.metrics.readings_seen.inc(len(message.rows))
            self.view.add_sensor(message, now)
        elif topic == topics.predictions:
            try:
                doc = parse_prediction(value)
            except BadPrediction as exc:
                self.metrics.malformed.labels("predictions").inc()
                log.warning("dashboard: skipped a malformed prediction (%s)", exc)
                return
            self.metrics.predictions_seen.inc()
            if doc.predicted_defect:
                self.metrics.defects_seen.inc()
            self.view.add_prediction(doc, now)
        elif topic == topics.deadletter:
            try:
                reason = orjson.loads(value or b"")["reason"]
                if not isinstance(reason, str):
                    raise TypeError(reason)
            except (orjson.JSONDecodeError, KeyError, TypeError):
                self.metrics.malformed.labels("deadletter").inc()
                return
            self.view.add_deadletter(reason)
        self.metrics.castings_kept.set(len(self.view.castings))

    async def _watch_broker(self, consumer: AIOKafkaConsumer) -> None:
        """`connected`: a metadata round trip every `PROBE_S` (an idle consumer does not notice an outage: it
        waits it out silently); the worker's lag every `LAG_INTERVAL_S`."""
        group = worker_ingest_group(self.cfg)
        admin: AIOKafkaAdminClient | None = None
        last_lag = 0.0
        try:
            while True:
                try:
                    if admin is None:
                        admin = AIOKafkaAdminClient(**aiokafka_kwargs(self.cfg.kafka), request_timeout_ms=5000)
                        await asyncio.wait_for(admin.start(), timeout=PROBE_TIMEOUT_S)
                    await asyncio.wait_for(admin.describe_cluster(), timeout=PROBE_TIMEOUT_S)
                    self.connected = True
                    if time.monotonic() - last_lag >= LAG_INTERVAL_S:
                        self.view.lag = await self._lag(consumer, admin, group)
                        if self.view.lag is not None:  # else (no commit yet) asked again at the next probe
                            last_lag = time.monotonic()
                            self.metrics.sensor_lag.labels(group).set(self.view.lag)
                except (TimeoutError, KafkaError, OSError) as exc:
                    if self.connected:
                        log.warning("dashboard: broker unreachable (%s: %s)", type(exc).__name__, exc)
                    self.connected = False
                    self.view.lag = None
                await asyncio.sleep(PROBE_S)
        finally:
            if admin is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(admin.close(), timeout=5)

    async def _lag(self, consumer: AIOKafkaConsumer, admin: AIOKafkaAdminClient, group: str) -> int | None:
        partitions = consumer.partitions_for_topic(self.cfg.topics.sensors)
        if not partitions:
            return None
        tps = [TopicPartition(self.cfg.topics.sensors, p) for p in partitions]
        ends = await asyncio.wait_for(consumer.end_offsets(tps), timeout=10)
        committed = await asyncio.wait_for(admin.list_consumer_group_offsets(group, partitions=tps), timeout=10)
        if not committed:
            return None
        return int(sum(max(0, ends[tp] - (committed[tp].offset if tp in committed else 0)) for tp in tps))
