"""The garbage collector's settings for a long streaming run (the worker, a replay).

CPython's cyclic collector runs whenever allocations outnumber deallocations by `threshold0` (700), and
now and then walks the older generations. A worker's heap is mostly what start-up made and keeps: torch,
the model, faust, aiokafka, about a million objects. Ingest makes a few short-lived objects per reading
(the decoded message, its rows, the record), so at 50k readings/s the collector ran often and its walks
of the older generations grew with that start-up heap: measured on single readings, the worker ingested
62k readings/s with the defaults, 80-85k with the start-up heap frozen, 91k with it frozen and the young
generation collected every 50,000 allocations (docs/BENCHMARKS.md §2b). The collector stays on, so cycles
made later (exceptions with their tracebacks, asyncio's) are still freed.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)

#: allocations between collections of the young generation, then of the middle and the old one
THRESHOLDS = (50_000, 50, 100)


def settle_heap() -> None:
    """Call once start-up is over (the model loaded, the clients started): what exists now is moved out of
    the collector's sight for good (`gc.freeze`), after one full collection so that no garbage is kept."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    log.info("%d start-up objects frozen out of the garbage collector's walks; thresholds %s",
             gc.get_freeze_count(), THRESHOLDS)
