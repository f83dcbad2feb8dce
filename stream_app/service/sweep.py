"""The abandonment sweep: castings with no end marker after `window.abandon_after_s` -> `incomplete`.

A function of (store, clock, send): the faust app runs it on a timer. With several workers each
casting is claimed by one (an expiring claim key); it leaves the sweep list only after its dead
letter is acknowledged, so a crash in between leaves it to a later sweep (at-least-once). The swept
casting is sealed as a dead letter, so a reading that still arrives is a `late_reading` and an end
marker `conflicting_end`, not the start of a new window.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from stream_app.runtime.outages import Dependency
from stream_app.service.records import DeadLetter
from stream_app.service.window_store import RedisWindowStore

log = logging.getLogger(__name__)

SWEEP_CLAIM_HOLD_S = 60  # a sweep's claim on a casting outlives any normal send; then a later sweep retries

#: sends dead letters and returns once the broker acknowledged them
SendLetters = Callable[[list[DeadLetter], float], Awaitable[None]]


async def sweep_abandoned(store: RedisWindowStore, abandon_after_s: float, sensors_topic: str, now: float,
                          send: SendLetters, redis: Dependency | None = None) -> list[str]:
    """Dead-letter and free the castings idle since `now - abandon_after_s`; returns their ids.
    With `redis`, every store call waits out Redis outages (`send` is the caller's to make patient)."""

    async def call(fn, what: str):
        return await (redis.call(fn, what) if redis is not None else fn())

    stale = await call(lambda: store.stale(now - abandon_after_s), "sweep")
    claimed = await call(lambda: store.claim(stale, hold_s=SWEEP_CLAIM_HOLD_S), "sweep claim")
    if not claimed:
        return []
    letters = [
        DeadLetter("incomplete", f"no end marker within {abandon_after_s:g}s",
                   {"topic": sensors_topic, "partition": None, "offset": None}, c.encode(), None, c)
        for c in claimed
    ]
    await send(letters, now)
    await call(lambda: store.seal_abandoned(claimed), "sealing swept castings")
    await call(lambda: store.free(claimed), "freeing swept castings")
    log.warning("dead-lettered %d abandoned casting(s): %s", len(claimed), ", ".join(claimed[:10]))
    return claimed
