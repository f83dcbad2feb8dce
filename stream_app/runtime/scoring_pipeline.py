"""Two scoring batches in flight: batch N+1 is fetched and assembled on the event loop while batch N's
forward runs in the scoring thread, and batches are delivered in the order submitted."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from stream_app.service.records import ScoringRequest
from stream_app.service.scoring_stage import PreparedBatch, ScoringOutcome, ScoringStage

log = logging.getLogger(__name__)

T = TypeVar("T")

Deliver = Callable[[ScoringOutcome, T], Awaitable[None]]


class ScoringPipeline(Generic[T]):
    """Keeps two batches in flight: batch N+1 is fetched and assembled on the event loop while batch N's
    forward runs in the scoring thread (which releases the GIL), and batch N is delivered while batch
    N+1's forward runs. `submit` returns once the batch before is delivered, so at most two are open.

    `deliver(outcome, token)` sends the outcome, waits for the broker's acks, frees the windows and
    acks the source records (the token says which); batches are delivered in the order submitted.
    """

    def __init__(self, stage: ScoringStage, deliver: Deliver[T]) -> None:
        self.stage = stage
        self.deliver = deliver
        self._previous: asyncio.Task[None] | None = None

    async def submit(self, requests: Sequence[ScoringRequest], token: T) -> None:
        prepared = await self.stage.prepare(requests)
        previous = self._previous
        # the task queues its forward behind the previous one on the (single) scoring thread at once
        self._previous = asyncio.ensure_future(self._complete(prepared, token, previous))
        self._previous.add_done_callback(_log_failure)
        if previous is not None:
            await previous

    async def _complete(self, prepared: PreparedBatch, token: T, previous: asyncio.Task[None] | None) -> None:
        outcome = await self.stage.complete(prepared)
        if previous is not None:  # deliver in order
            await asyncio.shield(previous)
        await self.deliver(outcome, token)

    async def drain(self) -> None:
        """Wait until every submitted batch is delivered."""
        if self._previous is not None:
            await self._previous

    def cancel(self) -> None:
        """Stop what is in flight without delivering it (its source records stay unacked)."""
        if self._previous is not None:
            self._previous.cancel()


def _log_failure(task: asyncio.Task[None]) -> None:
    # the next `submit` raises it too; this covers the last batch of a burst, which nothing awaits
    if not task.cancelled() and task.exception() is not None:
        log.error("scoring batch failed; its records stay unacked", exc_info=task.exception())
