"""Ingest stage: a batch of sensor records -> window-store writes, scoring requests, dead letters.

Framework-free: the worker's ingest consumer and the replay drive the same code. The caller sends
what it returns (requests first, then dead letters), waits for the broker's acks, and only then
commits the source records, so a crash anywhere re-processes the batch (writes are idempotent).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from stream_app.errors import RejectedInput
from stream_app.messages import EndMarker, MessageParser, Readings
from stream_app.metrics import Metrics
from stream_app.records import DeadLetter, ScoringRequest, SourceRecord
from stream_app.window_store import RedisWindowStore

log = logging.getLogger(__name__)


@dataclass
class IngestOutcome:
    requests: list[ScoringRequest] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)
    readings: int = 0
    already_done: list[str] = field(default_factory=list)  # end markers re-delivered after scoring


def reject(record: SourceRecord, error: RejectedInput, casting_id: str | None = None) -> DeadLetter:
    log.warning(
        "rejected %s[%d]@%d: %s: %s", record.topic, record.partition, record.offset, error.reason, error.detail
    )
    return DeadLetter(error.reason, error.detail, record.source(), record.key, record.value, casting_id)


class IngestStage:
    def __init__(self, parser: MessageParser, store: RedisWindowStore, metrics: Metrics) -> None:
        self.parser = parser
        self.store = store
        self.metrics = metrics

    async def process(self, records: Sequence[SourceRecord], now: float) -> IngestOutcome:
        outcome = IngestOutcome()
        readings: list[Readings] = []
        ends: list[tuple[SourceRecord, EndMarker]] = []
        for record in records:
            try:
                message = self.parser.parse(record.key, record.value)
            except RejectedInput as error:
                outcome.deadletters.append(reject(record, error))
                continue
            except Exception as exc:  # a bug in our parser must not stop the stream: keep the record, say so
                log.exception("parser failed on %s[%d]@%d", record.topic, record.partition, record.offset)
                outcome.deadletters.append(reject(record, RejectedInput("parse_error", repr(exc)[:300])))
                continue
            if isinstance(message, Readings):
                readings.append(message)
                outcome.readings += len(message.rows)
            else:
                ends.append((record, message))
        # All readings of the batch are written before any end marker of the batch is looked at:
        # Kafka keeps a casting's readings ahead of its end marker, and so must we.
        await self.store.append(readings, now)
        states = await self.store.end_states([end.casting_id for _, end in ends])
        discard: list[str] = []
        for (record, end), (has_window, done) in zip(ends, states, strict=True):
            if done:
                # Re-delivered after it was scored: replayed readings may have re-created a partial
                # window; drop it. The outcome was produced already.
                discard.append(end.casting_id)
                outcome.already_done.append(end.casting_id)
                continue
            try:
                if not has_window:
                    raise RejectedInput("unknown_casting", f"end marker with n_steps={end.n_steps}, no readings")
                self.parser.check_length(end)
            except RejectedInput as error:
                outcome.deadletters.append(reject(record, error, end.casting_id))
                discard.append(end.casting_id)
                continue
            outcome.requests.append(ScoringRequest(end.casting_id, end.n_steps, now, record.source()))
        await self.store.free(discard)
        self.metrics.messages_consumed.inc(len(records))
        self.metrics.readings_ingested.inc(outcome.readings)
        self.metrics.ingest_batch_size.observe(len(records))
        for letter in outcome.deadletters:
            self.metrics.deadletters.labels(letter.reason).inc()
        return outcome
