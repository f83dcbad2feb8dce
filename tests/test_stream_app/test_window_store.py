"""RedisWindowStore against the real Redis: sweep claims and first-writer-wins outcomes."""

from __future__ import annotations

import asyncio

import pytest

from stream_app.runtime.connections import create_redis
from stream_app.service.redis_window_store import RedisWindowStore

pytestmark = pytest.mark.integration


@pytest.fixture
async def store(stream_config, redis_client):  # redis_client: fails clearly without Redis, cleans up
    client = create_redis(stream_config.redis)
    yield RedisWindowStore(client, stream_config.redis_prefix, 600)
    await client.aclose()


async def test_each_abandoned_casting_is_claimed_by_one_sweep_until_the_claim_expires(store):
    first = await store.claim(["A-1", "A-2"], hold_s=1)
    second = await store.claim(["A-1", "A-2", "A-3"], hold_s=1)  # another worker's sweep, same moment
    assert first == ["A-1", "A-2"]
    assert second == ["A-3"]
    await store.free(["A-1"])  # A-1 was dead-lettered; a sweep that listed it before cannot take it again
    assert await store.claim(["A-1"], hold_s=1) == []
    await asyncio.sleep(1.2)  # the claimant of A-2 died before freeing it: a later sweep retries
    assert await store.claim(["A-2"], hold_s=1) == ["A-2"]


async def test_the_first_stored_outcome_wins(store):
    assert await store.record_outcomes([("O-1", b"Pfirst"), ("O-2", b"Dletter")]) == [None, None]
    assert await store.record_outcomes([("O-1", b"Psecond"), ("O-3", b"Pthird")]) == [b"Pfirst", None]
    assert await store.client.get(store.done_key("O-1")) == b"Pfirst"
