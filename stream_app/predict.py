"""Scoring stage: a micro-batch of scoring requests -> predictions and dead letters.

One Redis pipeline fetches every window (and any outcome already produced), the model runs once
per batch in a worker thread, and each outcome is stored before it is sent. A re-delivered request
(crash after sending, before the offset commit) finds its stored outcome and re-sends those exact
bytes, so duplicates are identical. The caller sends, waits for acks, then `finish`es the batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
import orjson

from stream_app.config import WindowConfig
from stream_app.errors import RejectedInput
from stream_app.metrics import Metrics
from stream_app.records import DeadLetter, ScoringRequest, iso_time
from stream_app.scoring import Scorer
from stream_app.window_store import RedisWindowStore
from stream_app.windows import assemble_window

log = logging.getLogger(__name__)

PREDICTION, DEADLETTER = b"P", b"D"  # first byte of a stored outcome says where it goes
ATTENTION_DECIMALS = 7


@dataclass
class ScoringOutcome:
    predictions: list[tuple[str, bytes]] = field(default_factory=list)  # (casting id, payload)
    deadletters: list[tuple[str, bytes]] = field(default_factory=list)
    casting_ids: list[str] = field(default_factory=list)  # every casting of the batch, to free


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


class ScoringStage:
    def __init__(
        self,
        store: RedisWindowStore,
        scorer: Scorer,
        window_cfg: WindowConfig,
        threshold: float,
        max_batch_size: int,
        metrics: Metrics,
        executor: Executor | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.scorer = scorer
        self.window_cfg = window_cfg
        self.threshold = threshold
        self.max_batch_size = max_batch_size
        self.metrics = metrics
        self.executor = executor
        self.clock = clock

    async def process(self, requests: Sequence[ScoringRequest]) -> ScoringOutcome:
        outcome = ScoringOutcome()
        unique: dict[str, ScoringRequest] = {}
        for request in requests:  # the same casting twice in one batch is scored once
            unique.setdefault(request.casting_id, request)
        ids = list(unique)
        outcome.casting_ids = ids
        started = self.clock()
        fetched = await self.store.fetch(ids)

        to_score: list[tuple[ScoringRequest, np.ndarray, int]] = []
        new_outcomes: list[tuple[str, bytes]] = []
        for casting_id, (rows, stored) in zip(ids, fetched, strict=True):
            request = unique[casting_id]
            if stored is not None:
                self.metrics.duplicates_resent.inc()
                self._route(outcome, casting_id, stored)
                continue
            try:
                window, gaps = assemble_window(rows, request.n_steps, self.scorer.n_channels, self.window_cfg)
            except RejectedInput as error:
                log.warning("casting %s rejected at scoring: %s: %s", casting_id, error.reason, error.detail)
                letter = DeadLetter(error.reason, error.detail, request.source, casting_id.encode(),
                                    request.to_bytes(), casting_id)
                stored = DEADLETTER + letter.to_bytes(started)
                self.metrics.deadletters.labels(error.reason).inc()
                new_outcomes.append((casting_id, stored))
                self._route(outcome, casting_id, stored)
                continue
            to_score.append((request, window, gaps))
            self.metrics.queue_delay.observe(max(0.0, started - request.end_consumed_at))

        if to_score:
            batch_size = len(to_score)
            self.metrics.batch_size.observe(batch_size)
            self.metrics.batch_fill.observe(min(1.0, batch_size / self.max_batch_size))
            loop = asyncio.get_running_loop()
            t0 = time.perf_counter()
            scores = await loop.run_in_executor(self.executor, self.scorer.score, [w for _, w, _ in to_score])
            self.metrics.inference_time.observe(time.perf_counter() - t0)
            now = self.clock()
            for (request, _window, gaps), score in zip(to_score, scores, strict=True):
                payload = prediction_payload(
                    request, score.probability, score.attention, threshold=self.threshold,
                    model_version=self.scorer.version, gaps_filled=gaps, batch_size=batch_size, now=now,
                )
                stored = PREDICTION + payload
                new_outcomes.append((request.casting_id, stored))
                self._route(outcome, request.casting_id, stored)
                self.metrics.end_to_end_latency.observe(max(0.0, now - request.end_consumed_at))
            self.metrics.castings_scored.inc(batch_size)
        await self.store.record_outcomes(new_outcomes)
        return outcome

    @staticmethod
    def _route(outcome: ScoringOutcome, casting_id: str, stored: bytes) -> None:
        kind, payload = stored[:1], stored[1:]
        target = outcome.predictions if kind == PREDICTION else outcome.deadletters
        target.append((casting_id, payload))

    async def finish(self, outcome: ScoringOutcome) -> None:
        """After the outcomes are acknowledged by the broker: free the windows."""
        await self.store.free(outcome.casting_ids)
