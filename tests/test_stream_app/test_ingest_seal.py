"""End markers seal: the ingest stage against the real Redis, every order of section 3 of issue 10, fed as
one burst (one batch), one record per batch (spread out) and in random splits. The outcome must not
depend on how the records were batched, i.e. on timing.
"""

from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest

from stream_app.runtime.connections import create_redis
from stream_app.service.ingest_stage import IngestStage
from stream_app.service.messages import MessageParser
from stream_app.service.records import SourceRecord
from stream_app.service.redis_window_store import RedisWindowStore
from stream_app.tools.simulate import end_message, reading_message

pytestmark = pytest.mark.integration

ROW = [1.2, 1520.0, 150.0, 200.0, 25.0]
CID = "S-1"


def readings(steps) -> list[bytes]:
    return [reading_message(CID, s, ROW) for s in steps]


#: name -> (values in partition order, expected requests, expected dead letters, window steps, repeated ends)
ORDERS = {
    "end, later steps, a second end": (
        [*readings(range(200)), end_message(CID, 200), *readings(range(200, 250)), end_message(CID, 250)],
        [200], {"late_reading": 50, "conflicting_end": 1}, 200, 0),
    "steps after the end, no second end": (
        [*readings(range(200)), end_message(CID, 200), *readings(range(200, 210))],
        [200], {"late_reading": 10}, 200, 0),
    "the same end marker 1,000 times": (
        [*readings(range(150)), *[end_message(CID, 150)] * 1000],
        [150], {}, 150, 999),
    "an end, then one with another n_steps": (
        [*readings(range(200)), end_message(CID, 200), end_message(CID, 199)],
        [200], {"conflicting_end": 1}, 200, 0),
    "a rejected end marker still seals": (
        [*readings(range(50)), end_message(CID, 50), *readings(range(50, 60)), end_message(CID, 60)],
        [], {"too_short": 1, "late_reading": 10, "conflicting_end": 1}, 0, 0),
}

SPLITS = ["one burst", "one record per batch", "random batches"]


def batches_of(records: list[SourceRecord], split: str) -> list[list[SourceRecord]]:
    if split == "one burst":
        return [records]
    if split == "one record per batch":
        return [[r] for r in records]
    rng = random.Random(len(records))
    out, i = [], 0
    while i < len(records):
        size = rng.randint(1, 40)
        out.append(records[i : i + size])
        i += size
    return out


def as_records(topic: str, values: list[bytes], first_offset: int = 0) -> list[SourceRecord]:
    return [SourceRecord(topic, 0, first_offset + i, CID.encode(), v) for i, v in enumerate(values)]


async def run_stage(stage: IngestStage, batches: list[list[SourceRecord]]):
    requests, letters, repeated = [], Counter(), 0
    for batch in batches:
        outcome = await stage.process(batch, now=1000.0)
        requests += [r.n_steps for r in outcome.requests]
        letters.update(letter.reason for letter in outcome.deadletters)
        repeated += outcome.repeated_ends
    return requests, letters, repeated


@pytest.fixture
async def stage_factory(stream_config, redis_client):
    clients = []

    def make() -> tuple[IngestStage, RedisWindowStore]:
        client = create_redis(stream_config.redis)
        clients.append(client)
        store = RedisWindowStore(client, stream_config.redis_prefix, 600)
        return IngestStage(MessageParser(stream_config.validation), store), store

    yield make
    for client in clients:
        await client.aclose()


@pytest.mark.parametrize("split", SPLITS)
@pytest.mark.parametrize("order", list(ORDERS))
async def test_the_outcome_of_an_order_does_not_depend_on_batching(order, split, stage_factory, redis_client):
    values, want_requests, want_letters, window_steps, want_repeated = ORDERS[order]
    stage, store = stage_factory()
    records = as_records(f"sensors-{split}", values)

    requests, letters, repeated = await run_stage(stage, batches_of(records, split))

    assert requests == want_requests  # at most one scoring request, whatever the batching
    assert dict(letters) == want_letters
    assert repeated == want_repeated
    window = redis_client.hgetall(store.window_key(CID))
    assert sorted(int(step) for step in window) == list(range(window_steps))  # exactly what came before the end
    assert redis_client.zscore(store.open_key, CID) is None  # sealed: the sweep will not call it incomplete


async def test_a_batch_read_again_after_a_crash_changes_nothing(stage_factory, redis_client):
    """At-least-once: the same records processed twice (a crash before the commit) resend the scoring
    request and dead letters, and neither re-open nor re-write the window."""
    stage, store = stage_factory()
    values = [*readings(range(200)), end_message(CID, 200), *readings(range(200, 205))]
    records = as_records("sensors", values)
    first = await run_stage(stage, [records])
    again = await run_stage(stage, [records])
    assert first == again == ([200], Counter({"late_reading": 5}), 0)

    # once scored (outcome stored, window freed) a re-read neither asks for scoring nor re-creates the window
    await store.record_outcomes([(CID, b"P{}")])
    await store.free([CID])
    requests, letters, _ = await run_stage(stage, [records])
    assert requests == [] and letters == Counter({"late_reading": 5})
    assert not redis_client.exists(store.window_key(CID))
    assert redis_client.zscore(store.open_key, CID) is None


async def test_a_reused_id_after_scoring_is_late_and_leaves_the_outcome_alone(stage_factory, redis_client):
    stage, store = stage_factory()
    first = as_records("sensors", [*readings(range(120)), end_message(CID, 120)])
    await run_stage(stage, [first])
    await store.record_outcomes([(CID, b"P{\"n_steps\":120}")])
    await store.free([CID])

    reuse = as_records("sensors", [*readings(range(130)), end_message(CID, 130), end_message(CID, 120)],
                       first_offset=len(first))
    requests, letters, repeated = await run_stage(stage, [reuse])
    assert requests == []
    assert letters == Counter({"late_reading": 130, "conflicting_end": 1})
    assert repeated == 1
    assert redis_client.get(store.done_key(CID)) == b"P{\"n_steps\":120}"
    assert not redis_client.exists(store.window_key(CID))


async def test_readings_before_the_end_in_the_same_fetch_are_kept_in_order(stage_factory, redis_client):
    """Two castings interleaved in one fetch: each one's end seals only its own window."""
    stage, store = stage_factory()
    other = "S-2"
    values, keys = [], []
    for step in range(150):
        for cid in (CID, other):
            values.append(reading_message(cid, step, ROW))
            keys.append(cid)
    values += [end_message(CID, 150), reading_message(other, 150, ROW), end_message(other, 151)]
    keys += [CID, other, other]
    records = [SourceRecord("sensors", 0, i, k.encode(), v) for i, (k, v) in enumerate(zip(keys, values, strict=True))]
    requests, letters, _ = await run_stage(stage, [records])
    assert requests == [150, 151] and not letters
    assert redis_client.hlen(store.window_key(other)) == 151
    rows = redis_client.hgetall(store.window_key(CID))
    assert np.frombuffer(rows[b"0"], dtype=np.float32).tolist() == pytest.approx(ROW)
