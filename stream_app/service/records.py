"""What flows between the stages: source records, scoring requests, dead letters, predictions.

All outgoing payloads are JSON bytes; their field lists are the contracts in DESIGN.md.
"""

from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from stream_app.service.messages import REASONS

PAYLOAD_LIMIT_BYTES = 4096


@dataclass(slots=True)  # not frozen: one is made per consumed record, and a frozen init costs 3.7x (#18)
class SourceRecord:
    """A consumed Kafka record, independent of the client that read it (treat it as read-only)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    def source(self) -> dict:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


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
