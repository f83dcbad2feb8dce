"""The window store: what the stages need from wherever the castings' windows are buffered.

`WindowStore` is the protocol; `RedisWindowStore` (redis_window_store.py) is the service's, and
`MemoryWindowStore` (memory_window_store.py) runs the stages in tests without a server. Every method
is one round trip in the Redis store, so a stage's cost is a fixed number of round trips per batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from stream_app.service.messages import Readings


@dataclass(frozen=True, slots=True)
class Seal:
    """Where a casting's end marker was read: everything before it in its partition is the window."""

    n_steps: int  # -1: sealed by the abandonment sweep (no end marker came)
    topic: str
    partition: int
    offset: int
    outcome: str | None = None  # "P" (prediction) or "D" (dead letter) once the outcome is stored

    def covers(self, topic: str, partition: int, offset: int) -> bool:
        """True for a record read before the end marker in the same partition (a re-delivery after a restart)."""
        return topic == self.topic and partition == self.partition and offset < self.offset

    def is_at(self, topic: str, partition: int, offset: int) -> bool:
        """True for the sealing end marker itself, read again."""
        return topic == self.topic and partition == self.partition and offset == self.offset

    def describe(self) -> str:
        if self.n_steps < 0:
            return "the casting was dead-lettered as incomplete (no end marker in time)"
        return f"the casting was sealed with n_steps={self.n_steps} at {self.topic}[{self.partition}]@{self.offset}"


@dataclass
class IngestWrites:
    """What one ingest batch changes in the store, applied in this order: readings, seals, discards."""

    readings: list[Readings]
    seals: dict[str, Seal]  # casting id -> its new seal
    discard: list[str]  # castings whose window is dropped (end marker rejected)


class WindowStore(Protocol):
    async def lookup(self, casting_ids: Sequence[str], window_ids: Sequence[str]) -> tuple[dict[str, Seal], set[str]]:
        """The seals of `casting_ids` (those sealed), and which of `window_ids` have a buffered window."""

    async def write_ingest(self, writes: IngestWrites, now: float) -> None:
        """Apply one ingest batch in order: readings (one run per message; a message read again rewrites
        its run; order is free; their castings are marked active at `now`), seals, discards. A stored seal
        implies the readings before it are stored."""

    async def fetch(self, casting_ids: Sequence[str]) -> list[tuple[dict[int, bytes], bytes | None]]:
        """(runs, stored outcome or None) per casting. A run is a message's first step -> its rows' packed
        bytes (`windows.assemble_window` turns the runs into the window)."""

    async def record_outcomes(self, outcomes: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        """Store each casting's outcome unless one is stored: None where stored, else the earlier outcome.
        The casting's seal learns that it has an outcome."""

    async def free(self, casting_ids: Sequence[str]) -> None:
        """Drop the windows and take the castings off the sweep list (seals and outcomes stay)."""

    async def stale(self, older_than: float, limit: int = 1000) -> list[str]:
        """Castings with buffered readings and no activity since `older_than` (epoch s)."""

    async def claim(self, casting_ids: Sequence[str], hold_s: int) -> list[str]:
        """The castings this caller claims for the sweep (a claim expires after `hold_s`, never deleted)."""

    async def seal_abandoned(self, casting_ids: Sequence[str]) -> None:
        """Seal swept castings as dead-lettered, unless an end marker sealed them meanwhile."""

    async def open_count(self) -> int:
        """Castings with buffered readings and no end marker."""
