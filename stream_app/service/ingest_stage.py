"""Ingest stage: a batch of sensor records -> window-store writes, scoring requests, dead letters.

Framework-free: the worker's ingest consumer and the replay drive the same code. The caller sends
what it returns (requests first, then dead letters), waits for the broker's acks, and only then
commits the source records, so a crash anywhere re-processes the batch.

An end marker **seals** its casting: the window is exactly the readings before it in partition order,
whatever the timing. The seal (the end marker's n_steps and topic/partition/offset) is stored with
the readings before it, in the same pipeline, and outlives the window, so for every later record of
the casting the outcome is decided by position, not by timing:

    reading before the seal's offset (read again)   already in the window: skipped, counted
    reading after the seal (also: an id reused)      `late_reading`, whether or not it was scored yet
    the sealing end marker read again                its scoring request is sent again (scoring dedups)
    an identical end marker                          counted and ignored: at most one request per casting
    an end marker with another n_steps               `conflicting_end`
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from operator import attrgetter

from stream_app.errors import RejectedInput
from stream_app.service.messages import EndMarker, Message, MessageParser, Readings
from stream_app.service.records import ConsumedRecord, DeadLetter, ScoringRequest, source_of
from stream_app.service.window_store import IngestWrites, Seal, WindowStore

log = logging.getLogger(__name__)

_KEY_VALUE = attrgetter("key", "value")  # a record's (key, value), in C


@dataclass
class IngestOutcome:
    requests: list[ScoringRequest] = field(default_factory=list)
    deadletters: list[DeadLetter] = field(default_factory=list)
    records: int = 0  # records in the batch
    readings: int = 0  # readings written to the store
    repeated_ends: int = 0
    redelivered_readings: int = 0


def reject(record: ConsumedRecord, error: RejectedInput, casting_id: str | None = None) -> DeadLetter:
    log.warning(
        "rejected %s[%d]@%d: %s: %s", record.topic, record.partition, record.offset, error.reason, error.detail
    )
    return DeadLetter(error.reason, error.detail, source_of(record), record.key, record.value, casting_id)


#: what a late reading's detail adds once its casting has an outcome (the seal's `outcome`)
_OUTCOME_NOTE = {"P": "; its prediction was already produced", "D": "; it was already dead-lettered"}


class IngestStage:
    def __init__(self, parser: MessageParser, store: WindowStore) -> None:
        self.parser = parser
        self.store = store

    def _parse(self, records: Sequence[ConsumedRecord]) -> list[Message | RejectedInput]:
        """The batch parser; should it fail (a bug), each record alone, so only the record that trips the
        bug is lost to `parse_error` and the stream goes on."""
        try:
            return self.parser.parse_many(list(map(_KEY_VALUE, records)))
        except Exception:
            log.exception("batch parser failed on %d records; parsing them one by one", len(records))
        results: list[Message | RejectedInput] = []
        for record in records:
            try:
                results.append(self.parser.parse(record.key, record.value))
            except RejectedInput as error:
                results.append(error)
            except Exception as exc:  # a bug in our parser must not stop the stream: keep the record, say so
                log.exception("parser failed on %s[%d]@%d", record.topic, record.partition, record.offset)
                results.append(RejectedInput("parse_error", repr(exc)[:300]))
        return results

    async def process(self, records: Sequence[ConsumedRecord], now: float) -> IngestOutcome:
        outcome = IngestOutcome(records=len(records))
        parsed: list[tuple[ConsumedRecord, Message]] = []
        for record, result in zip(records, self._parse(records), strict=True):
            if isinstance(result, RejectedInput):
                outcome.deadletters.append(reject(record, result))
            else:
                parsed.append((record, result))
        casting_ids = list(dict.fromkeys(message.casting_id for _, message in parsed))
        ended = list(dict.fromkeys(m.casting_id for _, m in parsed if type(m) is EndMarker))
        seals, windows = await self.store.lookup(casting_ids, ended)
        writes = IngestWrites(readings=[], seals={}, discard=[])
        buffered = set(windows)  # castings with readings in the store or earlier in this batch
        for record, message in parsed:  # in partition order: a casting's records keep their order in a fetch
            seal = seals.get(message.casting_id)
            if type(message) is Readings:
                if seal is None:  # the common case, inline: one per reading message (#18)
                    writes.readings.append(message)
                    buffered.add(message.casting_id)
                    outcome.readings += len(message.rows)
                else:
                    self._reading(record, message, seal, outcome)
            else:
                new_seal = self._end(record, message, seal, buffered, writes, outcome, now)
                if new_seal is not None:
                    seals[message.casting_id] = new_seal
        await self.store.write_ingest(writes, now)
        return outcome

    def _reading(self, record: ConsumedRecord, message: Readings, seal: Seal, outcome: IngestOutcome) -> None:
        """A reading of a sealed casting (one of an unsealed casting is written, in `process`)."""
        if seal.covers(record.topic, record.partition, record.offset):
            outcome.redelivered_readings += len(message.rows)  # stored before the seal; the window has it
        else:  # the same verdict whether or not the casting was scored yet: decided by order, not timing
            status = _OUTCOME_NOTE.get(seal.outcome or "", "")
            outcome.deadletters.append(reject(record, RejectedInput(
                "late_reading", f"step {message.start_step} arrived after the casting's end marker, the window "
                f"is unchanged ({seal.describe()}{status})"), message.casting_id))

    def _end(self, record: ConsumedRecord, end: EndMarker, seal: Seal | None, buffered: set[str],
             writes: IngestWrites, outcome: IngestOutcome, now: float) -> Seal | None:
        """Decide one end marker; returns the seal it creates, if any."""
        here = (record.topic, record.partition, record.offset)
        if seal is not None and not seal.is_at(*here):
            if end.n_steps == seal.n_steps:
                outcome.repeated_ends += 1
            else:
                outcome.deadletters.append(reject(record, RejectedInput(
                    "conflicting_end", f"n_steps={end.n_steps}, but {seal.describe()}"), end.casting_id))
            return None
        try:
            self.parser.check_length(end)
        except RejectedInput as error:  # the casting ends here all the same: seal it, drop its window
            outcome.deadletters.append(reject(record, error, end.casting_id))
            writes.discard.append(end.casting_id)
            new = Seal(end.n_steps, *here, outcome="D")
            if seal is None:
                writes.seals[end.casting_id] = new
            return new
        if seal is not None:  # the sealing end marker read again (restart, outage): ask for scoring again
            if seal.outcome is None:
                outcome.requests.append(ScoringRequest(end.casting_id, end.n_steps, now, source_of(record)))
            return None
        if end.casting_id not in buffered:
            outcome.deadletters.append(reject(record, RejectedInput(
                "unknown_casting", f"end marker with n_steps={end.n_steps}, no readings"), end.casting_id))
            return None
        new = Seal(end.n_steps, *here)
        writes.seals[end.casting_id] = new
        outcome.requests.append(ScoringRequest(end.casting_id, end.n_steps, now, source_of(record)))
        return new
