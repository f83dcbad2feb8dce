"""Redis window store: one hash per casting (step -> packed float32 row), pipelined.

Keys (all under the app's prefix, so a replay with another app id never touches live buffers):
    {prefix}:win:{casting_id}    hash   step -> row bytes; duplicates collapse, order is free
    {prefix}:open                zset   casting_id -> last activity (epoch s), for the abandonment sweep
    {prefix}:done:{casting_id}   string the outcome already produced for this casting (a prediction or a
                                 dead letter), so a re-delivered request re-sends the same bytes
    {prefix}:claim:{casting_id}  string one worker's claim on an abandoned casting (expires, never deleted)
Every key carries a TTL as a safety net. No method makes more than one round trip.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio

from stream_app.messages import Readings
from stream_app.windows import pack_row


class RedisWindowStore:
    def __init__(self, client: redis.asyncio.Redis, prefix: str, ttl_s: int) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.open_key = f"{prefix}:open"

    def window_key(self, casting_id: str) -> str:
        return f"{self.prefix}:win:{casting_id}"

    def done_key(self, casting_id: str) -> str:
        return f"{self.prefix}:done:{casting_id}"

    async def append(self, batch: Sequence[Readings], now: float) -> None:
        """Write every row of every message in one pipeline; HSET per casting, not per reading."""
        if not batch:
            return
        per_casting: dict[str, dict[int, bytes]] = {}
        for message in batch:
            rows = per_casting.setdefault(message.casting_id, {})
            packed = pack_row(message.rows)  # all rows at once; row i is bytes [i * width, (i + 1) * width)
            width = len(packed) // len(message.rows)
            for i in range(len(message.rows)):
                rows[message.start_step + i] = packed[i * width : (i + 1) * width]
        pipe = self.client.pipeline(transaction=False)
        for casting_id, rows in per_casting.items():
            key = self.window_key(casting_id)
            pipe.hset(key, mapping=rows)
            pipe.expire(key, self.ttl_s)
        pipe.zadd(self.open_key, dict.fromkeys(per_casting, now))
        pipe.expire(self.open_key, self.ttl_s)
        await pipe.execute()

    async def end_states(self, casting_ids: Sequence[str]) -> list[tuple[bool, bool]]:
        """(window exists, outcome already produced) per casting; also takes them off the sweep list."""
        if not casting_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for casting_id in casting_ids:
            pipe.exists(self.window_key(casting_id))
            pipe.exists(self.done_key(casting_id))
        pipe.zrem(self.open_key, *casting_ids)
        flags = await pipe.execute()
        return [(bool(flags[2 * i]), bool(flags[2 * i + 1])) for i in range(len(casting_ids))]

    async def fetch(self, casting_ids: Sequence[str]) -> list[tuple[dict[int, bytes], bytes | None]]:
        """(rows by step, stored outcome or None) per casting, in one round trip."""
        if not casting_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for casting_id in casting_ids:
            pipe.hgetall(self.window_key(casting_id))
            pipe.get(self.done_key(casting_id))
        replies = await pipe.execute()
        out = []
        for i in range(len(casting_ids)):
            raw_rows, done = replies[2 * i], replies[2 * i + 1]
            out.append(({int(step): row for step, row in raw_rows.items()}, done))
        return out

    async def has_step(self, casting_ids: Sequence[str], step: int) -> list[bool]:
        if not casting_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for casting_id in casting_ids:
            pipe.hexists(self.window_key(casting_id), str(step))
        return [bool(flag) for flag in await pipe.execute()]

    async def record_outcomes(self, outcomes: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        """Remember what was produced for each casting before it is sent (see module docstring).

        The first outcome stored for a casting wins (`SET NX GET`, Redis >= 7.0): for each one given,
        returns None where it was stored, or the outcome stored earlier, which is the one to send.
        """
        if not outcomes:
            return []
        pipe = self.client.pipeline(transaction=False)
        for casting_id, payload in outcomes:
            pipe.set(self.done_key(casting_id), payload, ex=self.ttl_s, nx=True, get=True)
        return list(await pipe.execute())

    async def free(self, casting_ids: Sequence[str]) -> None:
        if not casting_ids:
            return
        pipe = self.client.pipeline(transaction=False)
        pipe.delete(*(self.window_key(c) for c in casting_ids))
        pipe.zrem(self.open_key, *casting_ids)
        await pipe.execute()

    async def stale(self, older_than: float, limit: int = 1000) -> list[str]:
        """Castings with no activity since `older_than` (epoch s)."""
        ids = await self.client.zrangebyscore(self.open_key, "-inf", older_than, start=0, num=limit)
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    def claim_key(self, casting_id: str) -> str:
        return f"{self.prefix}:claim:{casting_id}"

    async def claim(self, casting_ids: Sequence[str], hold_s: int) -> list[str]:
        """Claim abandoned castings for this sweep: only the caller whose `SET NX` made a casting's claim
        key dead-letters it. The casting stays on the sweep list until the claimant frees it after the
        dead letter is acknowledged; if the claimant dies first, the claim expires after `hold_s` and a
        later sweep takes the casting again. Claims are never deleted, only expire, so a sweep that
        listed a casting just before it was freed cannot claim it a second time."""
        if not casting_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for casting_id in casting_ids:
            pipe.set(self.claim_key(casting_id), b"1", nx=True, ex=hold_s)
        taken = await pipe.execute()
        return [c for c, ok in zip(casting_ids, taken, strict=True) if ok]

    async def open_count(self) -> int:
        return int(await self.client.zcard(self.open_key))
