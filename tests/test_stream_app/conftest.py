"""Fixtures for the streaming service: a small checkpoint, worker processes, topic readers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stream_app.config import StreamConfig
from tests.test_stream_app.harness import RedisServer, TopicReader, WorkerProcess, create_topics


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """An untrained lightweight model with fitted normalisation: fast, and enough to check the plumbing."""
    import torch

    from models.checkpoint import save_checkpoint
    from models.lstm_model import LSTMModelVariants, SteelDefectLSTM
    from models.synthetic import generate_castings

    torch.manual_seed(7)
    model = SteelDefectLSTM(LSTMModelVariants.lightweight_lstm())
    model.fit_normalization(generate_castings(8, seed=3).sequences)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, model.eval(), metadata={"purpose": "stream_app tests"})
    return path



@pytest.fixture
def worker_factory(tmp_path) -> Iterator[Callable[[StreamConfig], WorkerProcess]]:
    started: list[WorkerProcess] = []

    def make(cfg: StreamConfig) -> WorkerProcess:
        worker = WorkerProcess(cfg, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield make
    for worker in started:
        worker.kill()


@pytest.fixture
def service_config(stream_config_factory, tiny_checkpoint) -> Callable[..., StreamConfig]:
    """Config for a worker under test: unique topics/app id, tiny model, topics created up front."""

    def make(**overrides) -> StreamConfig:
        model = {"checkpoint": str(tiny_checkpoint), "device": "cpu", "torch_threads": 1, **overrides.pop("model", {})}
        cfg = stream_config_factory(model=model, **overrides)
        create_topics(cfg)
        return cfg

    return make


@pytest.fixture
def reader_factory() -> Iterator[Callable[[StreamConfig, str], TopicReader]]:
    readers: list[TopicReader] = []

    def make(cfg: StreamConfig, topic: str) -> TopicReader:
        reader = TopicReader(cfg, topic)
        readers.append(reader)
        return reader

    yield make
    for reader in readers:
        reader.close()


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    """A Redis server of the test's own, to kill and restart (the shared one serves the other tests)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.kill()


# --------------------------------------------------------------------------- the secured stack


@pytest.fixture(scope="session")
def secured_env() -> dict[str, str]:
    """The ``STREAM_APP__*`` settings of the secured local stack (`stream-app devstack up --secured`, which
    `make test` starts), passwords included; fails (never skips) when that stack does not answer."""
    from stream_app.errors import DevstackError
    from stream_app.tools import devstack_secure

    settings = devstack_secure.SecuredSettings.from_env()
    try:
        env = devstack_secure.read_client_env(settings)
    except DevstackError as exc:
        pytest.fail(f"{exc} (or `make services-secured`)")
    down = [row.line() for row in devstack_secure.status(settings) if not row.healthy]
    if down:
        pytest.fail("the secured stack does not answer; run `make services-secured`:\n" + "\n".join(down))
    return env


def connection_free_environ(extra: dict[str, str]) -> dict[str, str]:
    """os.environ without its Kafka and Redis settings (they point at the plaintext stack), plus `extra`."""
    from stream_app.config import ENV_PREFIX

    own = (f"{ENV_PREFIX}KAFKA__", f"{ENV_PREFIX}REDIS__")
    return {**{k: v for k, v in os.environ.items() if not k.startswith(own)}, **extra}


@pytest.fixture
def secured_service_config(secured_env, unique_name, tiny_checkpoint) -> Callable[..., StreamConfig]:
    """`service_config`, against the secured stack: SASL_SSL to Kafka, TLS and an ACL user to Redis."""
    from stream_app.config import load_config

    def make(**overrides) -> StreamConfig:
        app_id = unique_name("secured")
        topics = {"sensors": f"{app_id}.sensors", "predictions": f"{app_id}.predictions",
                  "deadletter": f"{app_id}.deadletter", **overrides.pop("topics", {})}
        model = {"checkpoint": str(tiny_checkpoint), "device": "cpu", "torch_threads": 1, **overrides.pop("model", {})}
        cfg = load_config(environ=connection_free_environ(secured_env), app_id=app_id, topics=topics, model=model,
                          **overrides)
        create_topics(cfg)
        return cfg

    return make


# --------------------------------------------------------------------------- the Redis Cluster


@pytest.fixture(scope="session")
def redis_cluster_env() -> dict[str, str]:
    """The ``STREAM_APP__REDIS__*`` settings of the local Redis Cluster (`stream-app devstack up
    --redis-cluster`: three masters); fails (never skips) when it does not answer."""
    from stream_app.tools import devstack_redis_cluster

    settings = devstack_redis_cluster.RedisClusterSettings.from_env()
    down = [row.line() for row in devstack_redis_cluster.status(settings) if not row.healthy]
    if down:
        pytest.fail("the Redis Cluster does not answer; run `stream-app devstack up --redis-cluster`:\n"
                    + "\n".join(down))
    return devstack_redis_cluster.client_env(settings)


def redis_free_environ(extra: dict[str, str]) -> dict[str, str]:
    """os.environ without its Redis settings (they point at the plaintext stack's Redis), plus `extra`."""
    from stream_app.config import ENV_PREFIX

    return {**{k: v for k, v in os.environ.items() if not k.startswith(f"{ENV_PREFIX}REDIS__")}, **extra}


@pytest.fixture
def redis_cluster_config_factory(redis_cluster_env, unique_name) -> Callable[..., StreamConfig]:
    """`stream_config_factory` with Redis on the cluster (Kafka stays the plain stack's); no topics made."""
    from stream_app.config import load_config

    def make(**overrides) -> StreamConfig:
        app_id = unique_name("rcluster")
        topics = {"sensors": f"{app_id}.sensors", "predictions": f"{app_id}.predictions",
                  "deadletter": f"{app_id}.deadletter", **overrides.pop("topics", {})}
        cfg = load_config(environ=redis_free_environ(redis_cluster_env), app_id=app_id, topics=topics, **overrides)
        assert cfg.redis.cluster
        return cfg

    return make


@pytest.fixture
def redis_cluster_service_config(redis_cluster_config_factory, tiny_checkpoint) -> Callable[..., StreamConfig]:
    """`service_config` against the Redis Cluster: Kafka from the plain stack, Redis from the cluster."""

    def make(**overrides) -> StreamConfig:
        model = {"checkpoint": str(tiny_checkpoint), "device": "cpu", "torch_threads": 1, **overrides.pop("model", {})}
        cfg = redis_cluster_config_factory(model=model, **overrides)
        create_topics(cfg)
        return cfg

    return make
