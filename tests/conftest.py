"""Shared fixtures. Integration fixtures talk to the local Kafka and Redis that `make test` starts;
if a service does not answer, the test fails (it never skips)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator

import pytest

from stream_app.config import StreamConfig, load_config


@pytest.fixture
def unique_name() -> Callable[[str], str]:
    def make(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    return make


@pytest.fixture
def stream_config_factory(unique_name) -> Callable[..., StreamConfig]:
    """A config pointing at the local stack, with topic names and app id unique to the test."""

    def make(**overrides) -> StreamConfig:
        app_id = unique_name("test")
        topics = {
            "sensors": f"{app_id}.sensors",
            "predictions": f"{app_id}.predictions",
            "deadletter": f"{app_id}.deadletter",
        }
        topics.update(overrides.pop("topics", {}))
        return load_config(environ=os.environ, app_id=app_id, topics=topics, **overrides)

    return make


@pytest.fixture
def stream_config(stream_config_factory) -> StreamConfig:
    return stream_config_factory()


@pytest.fixture
def redis_client(stream_config) -> Iterator:
    from stream_app.runtime.connections import create_redis_sync

    client = create_redis_sync(stream_config.redis)
    try:
        client.ping()
    except Exception as exc:  # noqa: BLE001 - turn any connection failure into a clear test failure
        pytest.fail(f"Redis at {stream_config.redis.url} does not answer ({exc}); run `make services`")
    yield client
    for key in client.scan_iter(f"{stream_config.redis_prefix}:*"):
        client.delete(key)
    client.close()
