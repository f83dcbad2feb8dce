"""The abandonment sweep: castings with no end marker after `window.abandon_after_s` -> `incomplete`.

Two steps around the caller's send, functions of (store, clock): `claim_abandoned` claims the stale
castings (with several workers each casting is claimed by one, with an expiring claim) and returns
their dead letters; once the broker has acknowledged them, `close_abandoned` seals and frees the
castings. A crash in between leaves them on the sweep list, and a later sweep claims them again when
the claim expires (at-least-once). The seal makes a reading that still arrives a `late_reading` and
an end marker a `conflicting_end`, not the start of a new window.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from stream_app.service.records import DeadLetter
from stream_app.service.window_store import WindowStore

log = logging.getLogger(__name__)

SWEEP_CLAIM_HOLD_S = 60  # a sweep's claim on a casting outlives any normal send; then a later sweep retries


async def claim_abandoned(store: WindowStore, now: float, abandon_after_s: float, sensors_topic: str
                          ) -> list[DeadLetter]:
    """Claim the castings idle since `now - abandon_after_s`; their `incomplete` dead letters, to send."""
    stale = await store.stale(now - abandon_after_s)
    claimed = await store.claim(stale, hold_s=SWEEP_CLAIM_HOLD_S)
    return [
        DeadLetter("incomplete", f"no end marker within {abandon_after_s:g}s",
                   {"topic": sensors_topic, "partition": None, "offset": None}, c.encode(), None, c)
        for c in claimed
    ]


async def close_abandoned(store: WindowStore, letters: Sequence[DeadLetter]) -> None:
    """After the dead letters are acknowledged: seal the castings and free their windows."""
    ids = [letter.casting_id for letter in letters if letter.casting_id is not None]
    if not ids:
        return
    await store.seal_abandoned(ids)
    await store.free(ids)
    log.warning("dead-lettered %d abandoned casting(s): %s", len(ids), ", ".join(ids[:10]))
