"""Scoring stage: a micro-batch of scoring requests -> predictions and dead letters.

One Redis pipeline fetches every window (and any outcome already produced), the model runs once
per batch in a worker thread, and each outcome is stored before it is sent. A re-delivered request
(crash after sending, before the offset commit) finds its stored outcome and re-sends those exact
bytes, so duplicates are identical. The caller sends, waits for acks, then `finish`es the batch.

`swap` replaces the model between batches: a batch takes the model (and its threshold) once, when its
forward starts, so every casting of it is scored, and labelled with the version, of one whole model.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import orjson

from stream_app.config import WindowConfig
from stream_app.errors import RejectedInput
from stream_app.service.model_runner import Score, Scorer
from stream_app.service.records import DeadLetter, ScoringRequest, iso_time
from stream_app.service.window_store import WindowStore
from stream_app.service.windows import assemble_window

log = logging.getLogger(__name__)

PREDICTION, DEADLETTER = b"P", b"D"  # first byte of a stored outcome says where it goes
ATTENTION_DECIMALS = 7


@dataclass
class ScoringStats:
    """What a batch did, for the caller's metrics (the stage records none itself)."""

    queue_delays_s: list[float] = field(default_factory=list)  # end marker consumed -> batch started, per casting
    scored_batch_size: int = 0  # windows through the model
    inference_s: float | None = None  # the forward, timed in the scoring thread
    resent: int = 0  # castings answered with an outcome stored earlier
    new_deadletter_reasons: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list)  # end marker consumed -> prediction, per new prediction


@dataclass
class ScoringOutcome:
    predictions: list[tuple[str, bytes]] = field(default_factory=list)  # (casting id, payload)
    deadletters: list[tuple[str, bytes]] = field(default_factory=list)
    casting_ids: list[str] = field(default_factory=list)  # every casting of the batch, to free
    stats: ScoringStats = field(default_factory=ScoringStats)


@dataclass
class PreparedBatch:
    """A batch between its fetch and its forward."""

    outcome: ScoringOutcome = field(default_factory=ScoringOutcome)
    to_score: list[tuple[ScoringRequest, np.ndarray, int]] = field(default_factory=list)  # request, window, gaps
    new_outcomes: list[NewOutcome] = field(default_factory=list)


class NewOutcome(NamedTuple):
    casting_id: str
    stored: bytes  # PREDICTION or DEADLETTER + payload
    reason: str | None  # the dead letter's reason; None for a prediction
    end_consumed_at: float


def _route(outcome: ScoringOutcome, casting_id: str, stored: bytes) -> None:
    kind, payload = stored[:1], stored[1:]
    target = outcome.predictions if kind == PREDICTION else outcome.deadletters
    target.append((casting_id, payload))


def prediction_payload(
    request: ScoringRequest,
    probability: float,
    attention: np.ndarray,
    *,
    threshold: float,
    model_version: str,
    gaps_filled: int,
    batch_size: int,
    now: float,
) -> bytes:
    published = round(probability, 7)
    doc = {
        "casting_id": request.casting_id,
        "defect_probability": published,
        "predicted_defect": published >= threshold,  # agrees with the number a reader sees
        "threshold": threshold,
        "n_steps": request.n_steps,
        "attention": np.round(attention.astype(np.float64), ATTENTION_DECIMALS),
        "model_version": model_version,
        "gaps_filled": gaps_filled,
        "scored_at": iso_time(now),
        "latency_ms": round((now - request.end_consumed_at) * 1000.0, 3),
        "batch_size": batch_size,
    }
    # orjson writes the numpy attention array directly, ~10x faster than json.dumps of a list
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)


async def fetch_windows(
    store: WindowStore, requests: Sequence[ScoringRequest], n_channels: int, window_cfg: WindowConfig, started: float
) -> PreparedBatch:
    """Fetch the requested castings' windows in one round trip and assemble them (gaps filled), or find their
    stored outcome. The worker's scoring and the dataset builder both take windows from here, so a window in
    a dataset is bit for bit the one the worker scores."""
    batch = PreparedBatch()
    unique: dict[str, ScoringRequest] = {}
    for request in requests:  # the same casting twice in one batch is scored once
        unique.setdefault(request.casting_id, request)
    ids = list(unique)
    batch.outcome.casting_ids = ids
    fetched = await store.fetch(ids)
    for casting_id, (rows, stored) in zip(ids, fetched, strict=True):
        request = unique[casting_id]
        if stored is not None:
            batch.outcome.stats.resent += 1
            _route(batch.outcome, casting_id, stored)
            continue
        try:
            window, gaps = assemble_window(rows, request.n_steps, n_channels, window_cfg)
        except RejectedInput as error:
            log.warning("casting %s rejected at scoring: %s: %s", casting_id, error.reason, error.detail)
            letter = DeadLetter(error.reason, error.detail, request.source, casting_id.encode(),
                                request.to_bytes(), casting_id)
            batch.new_outcomes.append(
                NewOutcome(casting_id, DEADLETTER + letter.to_bytes(started), error.reason, request.end_consumed_at)
            )
            continue
        batch.to_score.append((request, window, gaps))
        batch.outcome.stats.queue_delays_s.append(max(0.0, started - request.end_consumed_at))
    return batch


def _timed_score(scorer: Scorer, windows: list[np.ndarray]) -> tuple[list[Score], float]:
    # timed in the scoring thread: with two batches in flight, one may wait there for the other
    t0 = time.perf_counter()
    scores = scorer.score(windows)
    return scores, time.perf_counter() - t0


class ScoringStage:
    def __init__(
        self,
        store: WindowStore,
        scorer: Scorer,
        window_cfg: WindowConfig,
        threshold: float,
        max_batch_size: int,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.scorer = scorer
        self.window_cfg = window_cfg
        self.threshold = threshold  # set together with `scorer` (see `swap`), on the event loop
        self.max_batch_size = max_batch_size
        self.executor = executor
        self.clock = clock

    def swap(self, scorer: Scorer, threshold: float) -> None:
        """Serve `scorer` from the next forward on (a batch already in its forward keeps the old one).
        Call on the event loop; the new model must take the same channels (the windows are assembled for them)."""
        if scorer.n_channels != self.scorer.n_channels:
            raise ValueError(f"the new model takes {scorer.n_channels} channels, the windows have "
                             f"{self.scorer.n_channels}")
        self.scorer, self.threshold = scorer, threshold

    async def process(self, requests: Sequence[ScoringRequest]) -> ScoringOutcome:
        """One batch from start to stored outcomes (the replay's way; the worker pipelines the two halves)."""
        return await self.complete(await self.prepare(requests))

    async def prepare(self, requests: Sequence[ScoringRequest]) -> PreparedBatch:
        """The event-loop half: fetch the windows in one round trip and assemble them."""
        return await fetch_windows(self.store, requests, self.scorer.n_channels, self.window_cfg, self.clock())

    async def complete(self, batch: PreparedBatch) -> ScoringOutcome:
        """The model half: forward in the scoring thread, payloads, outcomes stored before anything is sent."""
        if batch.to_score:
            batch_size = len(batch.to_score)
            loop = asyncio.get_running_loop()
            windows = [w for _, w, _ in batch.to_score]
            scorer, threshold = self.scorer, self.threshold  # one model for the whole batch, even across a swap
            scores, seconds = await loop.run_in_executor(self.executor, _timed_score, scorer, windows)
            batch.outcome.stats.scored_batch_size = batch_size
            batch.outcome.stats.inference_s = seconds
            now = self.clock()
            for (request, _window, gaps), score in zip(batch.to_score, scores, strict=True):
                payload = prediction_payload(
                    request, score.probability, score.attention, threshold=threshold,
                    model_version=scorer.version, gaps_filled=gaps, batch_size=batch_size, now=now,
                )
                stored = PREDICTION + payload
                batch.new_outcomes.append(NewOutcome(request.casting_id, stored, None, request.end_consumed_at))
        # Another batch (a re-delivery in flight, another worker) may have stored an outcome for the same
        # casting since the fetch: the first stored one wins, so every copy sent carries the same bytes.
        to_record = [(new.casting_id, new.stored) for new in batch.new_outcomes]
        earlier = await self.store.record_outcomes(to_record)
        now = self.clock()
        stats = batch.outcome.stats
        for new, first in zip(batch.new_outcomes, earlier, strict=True):
            if first is not None:
                stats.resent += 1
                _route(batch.outcome, new.casting_id, first)
            elif new.reason is not None:
                _route(batch.outcome, new.casting_id, new.stored)
                stats.new_deadletter_reasons.append(new.reason)
            else:
                _route(batch.outcome, new.casting_id, new.stored)
                stats.latencies_s.append(max(0.0, now - new.end_consumed_at))
        return batch.outcome

    async def finish(self, outcome: ScoringOutcome) -> None:
        """After the outcomes are acknowledged by the broker: free the windows."""
        await self.store.free(outcome.casting_ids)
