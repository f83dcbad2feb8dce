"""The outage policy without services: retries until success, one log line per outage, readiness, accounting."""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.request

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from stream_app.runtime.metrics import Metrics
from stream_app.runtime.outages import Dependency, OutageAbandoned, RepeatFilter


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def flaky(failures: int, exc: BaseException, clock: FakeClock | None = None):
    calls = {"n": 0}

    async def call() -> str:
        calls["n"] += 1
        if clock is not None:
            clock.now += 1.0
        if calls["n"] <= failures:
            raise exc
        return "done"

    return call, calls


async def test_an_outage_is_retried_until_it_ends_and_logged_once(caplog):
    metrics = Metrics()
    clock = FakeClock()
    dep = Dependency("redis", initial_wait_s=0.001, max_wait_s=0.002, clock=clock,
                     up_gauge=metrics.dependency_up.labels("redis"),
                     outage_seconds=metrics.outage_seconds.labels("redis"))
    call, calls = flaky(6, RedisConnectionError("connection refused"), clock)
    with caplog.at_level(logging.INFO, logger="stream_app.runtime.outages"):
        assert await dep.call(call, "ingest") == "done"
    assert calls["n"] == 7
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages  # one line when it starts, one when it ends
    assert "redis unreachable during ingest (ConnectionError: connection refused)" in messages[0]
    assert "redis is back after 6.0 s (6 failed attempt(s))" in messages[1]
    assert dep.ready and dep.outages == 1 and dep.longest_outage_s == 6.0
    assert metrics.outage_seconds.labels("redis")._value.get() == 6.0
    assert metrics.dependency_up.labels("redis")._value.get() == 1


async def test_readiness_drops_during_the_outage():
    dep = Dependency("kafka", initial_wait_s=0.001, max_wait_s=0.001)
    seen = []

    async def call() -> None:
        seen.append(dep.ready)
        if len(seen) < 3:
            raise TimeoutError("broker did not answer")

    await dep.call(call, "sends")
    assert seen == [True, False, False]
    assert dep.ready


async def test_a_probe_does_not_end_an_outage_while_a_call_still_fails():
    """A broker that answers metadata (the probe) while writes fail (too few in-sync replicas): unready
    until the write itself goes through."""
    dep = Dependency("kafka", initial_wait_s=0.001, max_wait_s=0.001)
    seen = []

    async def send() -> None:
        dep.probe_succeeded()  # the health probe answered between two attempts
        seen.append(dep.ready)
        if len(seen) < 4:
            raise TimeoutError("NotEnoughReplicas")

    await dep.call(send, "sends")
    assert seen == [True, False, False, False]
    assert dep.ready
    dep.failed(TimeoutError("probe"), "health probe")  # an outage seen by the probe alone ...
    dep.probe_succeeded()  # ... is ended by the probe
    assert dep.ready


async def test_a_call_that_hangs_makes_the_dependency_unready_until_it_answers():
    """A send to a leader that is gone for good neither succeeds nor fails: after `stall_after_s` the
    dependency is unready (the probe cannot end that), and ready again once the call answers."""
    dep = Dependency("kafka", stall_after_s=0.05)
    answer = asyncio.Event()

    async def send() -> str:
        await answer.wait()
        return "acked"

    task = asyncio.create_task(dep.call(send, "sending predictions"))
    await asyncio.sleep(0.01)
    assert dep.ready
    await asyncio.sleep(0.1)
    assert not dep.ready
    dep.probe_succeeded()
    assert not dep.ready
    answer.set()
    assert await task == "acked"
    assert dep.ready


@pytest.mark.parametrize("exc", [ValueError("a bug"), KeyError("x")])
async def test_anything_but_an_outage_propagates_at_once(exc):
    dep = Dependency("redis")
    call, calls = flaky(1, exc)
    with pytest.raises(type(exc)):
        await dep.call(call, "ingest")
    assert calls["n"] == 1 and dep.ready


async def test_give_up_stops_waiting_and_raises():
    dep = Dependency("redis", initial_wait_s=0.001, max_wait_s=0.001)
    call, calls = flaky(10**6, RedisConnectionError("down"))
    with pytest.raises((OutageAbandoned, RedisConnectionError)):
        await dep.call(call, "ingest", give_up=lambda: calls["n"] >= 3)
    assert calls["n"] == 3


async def test_cancellation_ends_the_wait():
    dep = Dependency("redis", initial_wait_s=0.05, max_wait_s=0.05)
    call, _ = flaky(10**6, RedisConnectionError("down"))
    task = asyncio.create_task(dep.call(call, "ingest"))
    await asyncio.sleep(0.2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_repeat_filter_lets_one_line_through_then_a_count():
    clock = FakeClock()
    repeat = RepeatFilter(("aiokafka",), every_s=30, clock=clock)

    def record(name: str, level: int = logging.ERROR) -> logging.LogRecord:
        return logging.LogRecord(name, level, __file__, 1, "Unable connect to node with id %s", (1,), None)

    assert repeat.filter(record("aiokafka.conn"))
    assert not any(repeat.filter(record("aiokafka.conn")) for _ in range(139))
    assert repeat.filter(record("stream_app.service.ingest_stage"))  # not a client library: untouched
    assert repeat.filter(record("aiokafka.conn", logging.INFO))  # below WARNING: untouched
    clock.now += 31
    summary = record("aiokafka.conn")
    assert repeat.filter(summary)
    assert "(and 139 similar line(s) in the last 31 s)" in summary.getMessage()


def test_health_endpoint_answers_503_while_unready():
    metrics = Metrics()
    state = {"ready": True}
    port = metrics.serve(0, "127.0.0.1", health=lambda: {"ready": state["ready"], "redis": "up"})
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as reply:
        assert reply.status == 200 and json.loads(reply.read())["ready"] is True
    state["ready"] = False
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
    assert caught.value.code == 503
    caught.value.close()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        assert b"casting_dependency_up" in reply.read()
