"""What flows between the stages: source records, scoring requests, dead letters, predictions.

All outgoing payloads are JSON bytes; their field lists are the contracts in DESIGN.md.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Protocol

from stream_app.service.messages import REASONS

PAYLOAD_LIMIT_BYTES = 4096


class ConsumedRecord(Protocol):
    """What the ingest stage reads of a consumed Kafka record: a `SourceRecord`, or the Kafka client's own
    record as it is (aiokafka's `ConsumerRecord` has these attributes; the ingest loop passes it through
    rather than copying every record into a `SourceRecord`)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


def source_of(record: ConsumedRecord) -> dict:
    """Where a record came from, as dead letters and scoring requests carry it."""
    return {"topic": record.topic, "partition": record.partition, "offset": record.offset}


@dataclass(slots=True)  # not frozen: the replay makes one per record, and a frozen init costs 3.7x (#18)
class SourceRecord:
    """A consumed Kafka record, independent of the client that read it (treat it as read-only)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    def source(self) -> dict:
        return source_of(self)


@dataclass(frozen=True, slots=True)
class ScoringRequest:
    """Handed from ingest to scoring through the durable internal topic, keyed by casting id."""

    casting_id: str
    n_steps: int
    end_consumed_at: float  # epoch seconds when the end marker was consumed (for latency)
    source: dict

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> ScoringRequest:
        doc = json.loads(raw)
        return cls(doc["casting_id"], int(doc["n_steps"]), float(doc["end_consumed_at"]), doc["source"])


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str
    detail: str
    source: dict
    key: bytes | None
    payload: bytes | None
    casting_id: str | None = None

    def __post_init__(self) -> None:
        if self.reason not in REASONS:
            raise ValueError(f"unknown dead-letter reason {self.reason!r}")

    def to_bytes(self, now: float) -> bytes:
        payload = self.payload or b""
        doc = {
            "reason": self.reason,
            "detail": self.detail,
            "casting_id": self.casting_id,
            "source": self.source,
            "key": _text_or_base64(self.key),
            "payload": _text_or_base64(payload[:PAYLOAD_LIMIT_BYTES]),
            "payload_bytes": len(payload),
            "payload_truncated": len(payload) > PAYLOAD_LIMIT_BYTES,
            "rejected_at": iso_time(now),
        }
        return json.dumps(doc, separators=(",", ":")).encode()


def _text_or_base64(raw: bytes | None) -> dict | str | None:
    """Text as text; anything that is not UTF-8 as {"base64": ...} so nothing is lost in the JSON."""
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode()}


def iso_time(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds")
