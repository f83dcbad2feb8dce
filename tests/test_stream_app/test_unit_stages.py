"""The ingest stage, the scoring stage and the sweep on the in-memory window store: no services.

The same order table as the Redis integration test (test_ingest_seal.py) runs here against
`MemoryWindowStore`, so a change in a stage is caught without Kafka or Redis; the Redis store keeps
its own integration tests.
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from models.lstm_model import LSTMModelVariants, SteelDefectLSTM
from models.synthetic import generate_castings
from stream_app.config import ValidationConfig, WindowConfig
from stream_app.service.ingest_stage import IngestStage
from stream_app.service.memory_window_store import MemoryWindowStore
from stream_app.service.messages import MessageParser
from stream_app.service.model_runner import Scorer
from stream_app.service.records import ScoringRequest, SourceRecord
from stream_app.service.scoring_stage import ScoringStage
from stream_app.service.sweep import SWEEP_CLAIM_HOLD_S, claim_abandoned, close_abandoned
from stream_app.tools.simulate import casting_messages, end_message, reading_message
from tests.test_stream_app.test_ingest_seal import CID, ORDERS, ROW, SPLITS, as_records, batches_of, run_stage


def keyed(values: list[bytes], first_offset: int = 0) -> list[SourceRecord]:
    """Records keyed by their own casting id, in one partition."""
    return [SourceRecord("sensors", 0, first_offset + i, json.loads(v)["casting_id"].encode(), v)
            for i, v in enumerate(values)]


class Clock:
    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> MemoryWindowStore:
    return MemoryWindowStore(clock=Clock())


@pytest.fixture
def ingest(store) -> IngestStage:
    return IngestStage(MessageParser(ValidationConfig()), store)


# ----------------------------------------------------------------------------------------------- ingest


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("order", list(ORDERS))
async def test_orders_around_an_end_marker_do_not_depend_on_batching(order, split, ingest, store):
    values, want_requests, want_letters, window_steps, want_repeated = ORDERS[order]
    requests, letters, repeated = await run_stage(ingest, batches_of(as_records("sensors", values), split))
    assert requests == want_requests
    assert dict(letters) == want_letters
    assert repeated == want_repeated
    assert sorted(store.windows.get(CID, {})) == list(range(window_steps))
    assert CID not in store.active


async def test_a_parser_bug_is_a_parse_error_dead_letter_and_the_batch_goes_on(ingest, monkeypatch):
    real_parse = ingest.parser.parse

    def parse(key, value):
        if b'"step":3,' in value:
            raise ZeroDivisionError("a bug")
        return real_parse(key, value)

    def parse_many(pairs):
        raise ZeroDivisionError("a bug in the batch path")

    # the batch parser fails on the whole batch; record by record, only step 3 trips the bug
    monkeypatch.setattr(ingest.parser, "parse", parse)
    monkeypatch.setattr(ingest.parser, "parse_many", parse_many)
    records = as_records("sensors", [reading_message(CID, s, ROW) for s in range(5)])
    outcome = await ingest.process(records, now=1.0)
    assert [letter.reason for letter in outcome.deadletters] == ["parse_error"]
    assert "ZeroDivisionError" in outcome.deadletters[0].detail
    assert outcome.readings == 4 and outcome.records == 5


async def test_an_end_marker_without_readings_is_an_unknown_casting_and_seals_nothing(ingest, store):
    outcome = await ingest.process(as_records("sensors", [end_message(CID, 150)]), now=1.0)
    assert [letter.reason for letter in outcome.deadletters] == ["unknown_casting"]
    assert CID not in store.seals


# ---------------------------------------------------------------------------------------------- scoring


@pytest.fixture(scope="module")
def scorer() -> Scorer:
    torch.manual_seed(3)
    model = SteelDefectLSTM(LSTMModelVariants.lightweight_lstm())
    model.fit_normalization(generate_castings(8, seed=4).sequences)
    return Scorer(model.eval(), "v-test", torch.device("cpu"))


def scoring_stage(store, scorer, clock) -> ScoringStage:
    return ScoringStage(store, scorer, WindowConfig(max_gap_share=0.05), 0.5, 8, clock=clock)


async def buffer(store: MemoryWindowStore, casting_id: str, values: np.ndarray, skip: set[int] = frozenset()):
    stage = IngestStage(MessageParser(ValidationConfig()), store)
    records = [SourceRecord("sensors", 0, i, casting_id.encode(), m) for i, m in
               enumerate(casting_messages(casting_id, values, chunk_size=1)) if i not in skip]
    outcome = await stage.process(records, now=1.0)
    assert not outcome.deadletters, outcome.deadletters
    return outcome.requests[0]


async def test_a_scored_batch_reports_its_stats_and_stores_its_outcomes(store, scorer):
    clock = Clock(100.0)
    values = generate_castings(2, seed=5).sequences
    requests = [await buffer(store, f"S-{i}", v) for i, v in enumerate(values)]
    requests = [ScoringRequest(r.casting_id, r.n_steps, 99.0, r.source) for r in requests]
    stage = scoring_stage(store, scorer, clock)
    outcome = await stage.process(requests)
    assert [c for c, _ in outcome.predictions] == ["S-0", "S-1"] and not outcome.deadletters
    stats = outcome.stats
    assert stats.scored_batch_size == 2 and stats.resent == 0 and stats.inference_s is not None
    assert stats.queue_delays_s == [1.0, 1.0] and stats.latencies_s == [1.0, 1.0]
    assert store.outcomes["S-0"] == b"P" + dict(outcome.predictions)["S-0"]
    assert store.seals["S-0"].outcome == "P"  # a re-read end marker asks for no scoring now
    await stage.finish(outcome)
    assert "S-0" not in store.windows


async def test_an_already_scored_casting_gets_its_stored_bytes_again(store, scorer):
    values = generate_castings(1, seed=6).sequences[0]
    request = await buffer(store, "A-1", values)
    stage = scoring_stage(store, scorer, Clock())
    first = await stage.process([request])
    again = await stage.process([request])  # a re-delivered request, after the first was sent
    assert again.predictions == first.predictions
    assert again.stats.resent == 1 and again.stats.scored_batch_size == 0 and not again.stats.latencies_s


async def test_too_many_gaps_is_a_dead_letter_stored_like_a_prediction(store, scorer):
    values = generate_castings(1, seed=7).sequences[0]
    skip = set(range(1, len(values), 3))  # a third of the readings missing
    request = await buffer(store, "G-1", values, skip=skip)
    outcome = await scoring_stage(store, scorer, Clock()).process([request])
    assert not outcome.predictions
    assert [json.loads(p)["reason"] for _, p in outcome.deadletters] == ["too_many_gaps"]
    assert outcome.stats.new_deadletter_reasons == ["too_many_gaps"]
    assert store.outcomes["G-1"].startswith(b"D")


# ------------------------------------------------------------------------------------------------ sweep


async def test_the_sweep_claims_each_abandoned_casting_once_and_seals_it():
    clock = Clock(1_000.0)
    store = MemoryWindowStore(clock=clock)
    stage = IngestStage(MessageParser(ValidationConfig()), store)
    await stage.process(keyed([reading_message("OLD", s, ROW) for s in range(3)]), now=100.0)
    await stage.process(keyed([reading_message("NEW", s, ROW) for s in range(3)], first_offset=3), now=990.0)

    letters = await claim_abandoned(store, clock(), abandon_after_s=600, sensors_topic="sensors")
    assert [(letter.reason, letter.casting_id) for letter in letters] == [("incomplete", "OLD")]
    assert await claim_abandoned(store, clock(), 600, "sensors") == []  # claimed: another sweep keeps off

    clock.now += SWEEP_CLAIM_HOLD_S + 1  # the claimant died before closing: a later sweep takes it again
    assert [letter.casting_id for letter in await claim_abandoned(store, clock(), 600, "sensors")] == ["OLD"]
    await close_abandoned(store, letters)
    assert "OLD" not in store.windows and await store.open_count() == 1

    late = await stage.process(keyed([reading_message("OLD", 3, ROW), end_message("OLD", 120)], first_offset=10),
                               now=clock())
    assert Counter(letter.reason for letter in late.deadletters) == {"late_reading": 1, "conflicting_end": 1}
    assert "incomplete" in late.deadletters[0].detail
    assert "OLD" not in store.windows  # no new window for the sweep to find again
