"""An in-memory `WindowStore` with the Redis store's semantics, for tests of the stages without a server.

Not a product fallback: the service always runs on Redis. TTLs are not modelled (a test never runs a
day); claims expire after `hold_s` on the injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from stream_app.service.messages import Readings
from stream_app.service.window_store import IngestWrites, Seal
from stream_app.service.windows import pack_row


class MemoryWindowStore:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.windows: dict[str, dict[int, bytes]] = {}
        self.active: dict[str, float] = {}  # the sweep list: casting id -> last activity
        self.outcomes: dict[str, bytes] = {}
        self.seals: dict[str, Seal] = {}
        self.claims: dict[str, float] = {}  # casting id -> claim expiry

    def _write_rows(self, batch: Sequence[Readings]) -> list[str]:
        written = []
        for message in batch:  # one run per message, as the Redis store keeps them
            self.windows.setdefault(message.casting_id, {})[message.start_step] = pack_row(message.rows)
            written.append(message.casting_id)
        return list(dict.fromkeys(written))

    async def lookup(self, casting_ids: Sequence[str], window_ids: Sequence[str]) -> tuple[dict[str, Seal], set[str]]:
        seals = {c: self.seals[c] for c in casting_ids if c in self.seals}
        return seals, {c for c in window_ids if c in self.windows}

    async def write_ingest(self, writes: IngestWrites, now: float) -> None:
        for casting_id in self._write_rows(writes.readings):
            if casting_id not in writes.seals and casting_id not in writes.discard:
                self.active[casting_id] = now
        self.seals.update(writes.seals)
        for casting_id in [*writes.seals, *writes.discard]:
            self.active.pop(casting_id, None)
        for casting_id in writes.discard:
            self.windows.pop(casting_id, None)

    async def fetch(self, casting_ids: Sequence[str]) -> list[tuple[dict[int, bytes], bytes | None]]:
        return [(dict(self.windows.get(c, {})), self.outcomes.get(c)) for c in casting_ids]

    async def record_outcomes(self, outcomes: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        earlier: list[bytes | None] = []
        for casting_id, payload in outcomes:
            earlier.append(self.outcomes.get(casting_id))
            self.outcomes.setdefault(casting_id, payload)
            seal = self.seals.get(casting_id)
            if seal is not None:
                self.seals[casting_id] = Seal(seal.n_steps, seal.topic, seal.partition, seal.offset,
                                              payload[:1].decode())
        return earlier

    async def free(self, casting_ids: Sequence[str]) -> None:
        for casting_id in casting_ids:
            self.windows.pop(casting_id, None)
            self.active.pop(casting_id, None)

    async def stale(self, older_than: float, limit: int = 1000) -> list[str]:
        return [c for c, at in sorted(self.active.items(), key=lambda item: item[1]) if at <= older_than][:limit]

    async def claim(self, casting_ids: Sequence[str], hold_s: int) -> list[str]:
        now = self.clock()
        taken = [c for c in casting_ids if self.claims.get(c, float("-inf")) <= now]
        for casting_id in taken:
            self.claims[casting_id] = now + hold_s
        return taken

    async def seal_abandoned(self, casting_ids: Sequence[str]) -> None:
        for casting_id in casting_ids:
            self.seals.setdefault(casting_id, Seal(-1, "", -1, -1))

    async def open_count(self) -> int:
        return len(self.active)
