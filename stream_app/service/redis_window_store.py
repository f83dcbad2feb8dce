"""The Redis window store: one hash per casting (first step -> packed float32 rows), pipelined.

Keys (all under the app's prefix, so a replay with another app id never touches live buffers). The
casting id sits in braces, a Redis Cluster *hash tag*: only the part inside the braces picks the slot,
so a casting's four keys share one slot, hence one master, on a Redis Cluster (`redis.cluster: true`):
    {prefix}:win:{<casting_id>}    hash   a message's first step -> its rows' bytes (one field per message:
                                          one row for a single reading, 50 for a chunk of 50); a message
                                          read twice rewrites its own field, order is free
    {prefix}:open                  zset   casting_id -> last activity (epoch s), for the abandonment sweep
                                          (one key for the whole app: on a cluster it lives on one master)
    {prefix}:done:{<casting_id>}   string the outcome already produced for this casting (a prediction or a
                                          dead letter), so a re-delivered request re-sends the same bytes
    {prefix}:seal:{<casting_id>}   hash   the end marker that sealed the casting: n (n_steps), t/p/o (its
                                          topic, partition, offset), and d (P or D) once the casting's outcome
                                          is stored. Kept after the window is freed, so late readings and
                                          reused ids are seen
    {prefix}:claim:{<casting_id>}  string one worker's claim on an abandoned casting (expires, never deleted)
Every key carries a TTL (`redis.key_ttl_s`) as a safety net. No method makes more than one round trip
(on a cluster: one per master, sent concurrently). Every command names one key (no multi-key DEL, no
MULTI/EXEC), so each pipeline runs unchanged on redis-py's cluster pipeline, which sends each master its
share of the commands in the order they were queued, on one connection (`ClusterNode.execute_pipeline`).
An id with braces of its own still keeps its keys together: the tag is the text from the first `{` to
the next `}`, the same in all four keys. When a master fails mid-pipeline the cluster client re-sends every
command without a truthy reply, some of which may have run (as `RetryingWindowStore` re-runs a whole
pipeline after an outage on one server): every write here is idempotent, and a re-sent `SET NX GET` of an
outcome returns the bytes just stored, which are the ones to send (counted as re-sent, not as scored).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import redis.asyncio
import redis.asyncio.cluster

from stream_app.service.messages import Readings
from stream_app.service.window_store import IngestWrites, Seal
from stream_app.service.windows import pack_row


class RedisWindowStore:
    """The `WindowStore` of the service (see `window_store.py` for what each method promises)."""

    def __init__(self, client: redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster, prefix: str,
                 ttl_s: int) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_s = ttl_s
        self.open_key = f"{prefix}:open"

    # the braces are a hash tag: a casting's keys share a slot on a Redis Cluster (module docstring)
    def window_key(self, casting_id: str) -> str:
        return f"{self.prefix}:win:{{{casting_id}}}"

    def done_key(self, casting_id: str) -> str:
        return f"{self.prefix}:done:{{{casting_id}}}"

    def seal_key(self, casting_id: str) -> str:
        return f"{self.prefix}:seal:{{{casting_id}}}"

    async def lookup(
        self, casting_ids: Sequence[str], window_ids: Sequence[str]
    ) -> tuple[dict[str, Seal], set[str]]:
        """The seals of `casting_ids` (those sealed), and which of `window_ids` have a buffered window."""
        if not casting_ids and not window_ids:
            return {}, set()
        pipe = self.client.pipeline(transaction=False)
        for casting_id in casting_ids:
            pipe.hmget(self.seal_key(casting_id), "n", "t", "p", "o", "d")
        for casting_id in window_ids:
            pipe.exists(self.window_key(casting_id))
        replies = await pipe.execute()
        seals = {}
        for casting_id, (n, topic, partition, offset, outcome) in zip(casting_ids, replies, strict=False):
            if n is not None and topic is not None and partition is not None and offset is not None:
                seals[casting_id] = Seal(int(n), topic.decode(), int(partition), int(offset),
                                         outcome.decode() if outcome else None)
        windows = {c for c, flag in zip(window_ids, replies[len(casting_ids):], strict=True) if flag}
        return seals, windows

    async def write_ingest(self, writes: IngestWrites, now: float) -> None:
        """Readings, then seals, then discards, in one round trip. Redis runs a pipeline's commands in order,
        so a seal that is stored implies the readings before it are stored too. On a cluster this holds per
        casting: its window and seal keys share a slot, so they go to one master, in queue order, on one
        connection (the `open` zset may live on another master; it only feeds the abandonment sweep)."""
        pipe = self.client.pipeline(transaction=False)
        opened = self._queue_rows(pipe, writes.readings)
        still_open = [c for c in opened if c not in writes.seals and c not in writes.discard]
        if still_open:
            pipe.zadd(self.open_key, dict.fromkeys(still_open, now))
            pipe.expire(self.open_key, self.ttl_s)
        for casting_id, seal in writes.seals.items():
            key = self.seal_key(casting_id)
            pipe.hset(key, mapping=self._seal_fields(seal))
            pipe.expire(key, self.ttl_s)
        closed = [*writes.seals, *writes.discard]
        if closed:
            pipe.zrem(self.open_key, *closed)
        for casting_id in writes.discard:
            pipe.delete(self.window_key(casting_id))  # one key per DEL: the windows lie in many slots
        if len(pipe):
            await pipe.execute()

    @staticmethod
    def _seal_fields(seal: Seal) -> Mapping[str, str | int]:
        fields: dict[str, str | int] = {"n": seal.n_steps, "t": seal.topic, "p": seal.partition, "o": seal.offset}
        if seal.outcome:
            fields["d"] = seal.outcome
        return fields

    def _queue_rows(self, pipe, batch: Sequence[Readings]) -> list[str]:
        """One HSET per casting, one field per message (a chunk stays one packed run: a field per step made
        the chunk path spend most of its time packing and storing fields); returns the castings written."""
        per_casting: dict[str, dict[int, bytes]] = {}
        for message in batch:
            per_casting.setdefault(message.casting_id, {})[message.start_step] = pack_row(message.rows)
        for casting_id, runs in per_casting.items():
            key = self.window_key(casting_id)
            pipe.hset(key, mapping=runs)
            pipe.expire(key, self.ttl_s)
        return list(per_casting)

    async def fetch(self, casting_ids: Sequence[str]) -> list[tuple[dict[int, bytes], bytes | None]]:
        """(runs by first step, stored outcome or None) per casting, in one round trip."""
        if not casting_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for casting_id in casting_ids:
            pipe.hgetall(self.window_key(casting_id))
            pipe.get(self.done_key(casting_id))
        replies = await pipe.execute()
        out = []
        for i in range(len(casting_ids)):
            raw_runs, done = replies[2 * i], replies[2 * i + 1]
            out.append(({int(step): run for step, run in raw_runs.items()}, done))
        return out

    async def record_outcomes(self, outcomes: Sequence[tuple[str, bytes]]) -> list[bytes | None]:
        """Remember what was produced for each casting before it is sent (see module docstring).

        The first outcome stored for a casting wins (`SET NX GET`, Redis >= 7.0): for each one given,
        returns None where it was stored, or the outcome stored earlier, which is the one to send.
        The casting's seal learns that it has an outcome (a re-read end marker then asks for no scoring).
        """
        if not outcomes:
            return []
        pipe = self.client.pipeline(transaction=False)
        for casting_id, payload in outcomes:
            pipe.set(self.done_key(casting_id), payload, ex=self.ttl_s, nx=True, get=True)
            pipe.hset(self.seal_key(casting_id), "d", payload[:1])
            pipe.expire(self.seal_key(casting_id), self.ttl_s)
        replies = await pipe.execute()
        return list(replies[::3])

    async def seal_abandoned(self, casting_ids: Sequence[str]) -> None:
        """Seal castings dead-lettered as `incomplete` (no end marker). HSETNX: an end marker that sealed
        the casting meanwhile keeps its own seal."""
        if not casting_ids:
            return
        pipe = self.client.pipeline(transaction=False)
        for casting_id in casting_ids:
            key = self.seal_key(casting_id)
            for name, value in (("n", -1), ("t", ""), ("p", -1), ("o", -1)):
                pipe.hsetnx(key, name, value)
            pipe.expire(key, self.ttl_s)
        await pipe.execute()

    async def free(self, casting_ids: Sequence[str]) -> None:
        if not casting_ids:
            return
        pipe = self.client.pipeline(transaction=False)
        for casting_id in casting_ids:
            pipe.delete(self.window_key(casting_id))  # one key per DEL: the windows lie in many slots
        pipe.zrem(self.open_key, *casting_ids)
        await pipe.execute()

    async def stale(self, older_than: float, limit: int = 1000) -> list[str]:
        """Castings with no activity since `older_than` (epoch s)."""
        ids = await self.client.zrangebyscore(self.open_key, "-inf", older_than, start=0, num=limit)
        return [i.decode() if isinstance(i, bytes) else i for i in ids]

    def claim_key(self, casting_id: str) -> str:
        return f"{self.prefix}:claim:{{{casting_id}}}"

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
