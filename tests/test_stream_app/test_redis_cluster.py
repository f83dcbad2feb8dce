"""The service against a real Redis Cluster of three masters (`stream-app devstack up --redis-cluster`).

Kafka is the plain stack's; Redis is the cluster, reached through one seed node with `redis.cluster: true`.
- the window store's own tests (test_window_store, test_ingest_seal) run again here, collected with this
  module's `stream_config`, which points them at the cluster;
- a casting's keys land in one slot, and castings spread over all three masters;
- the service scenarios run unchanged against it (their bodies, given the cluster config, as test_secured
  does): scoring, faults (SIGKILL and restart, two workers), bad input, replay;
- one master is killed (SIGKILL) mid-stream and restarted from its AOF: the worker waits, then scores every
  casting as an undisturbed run would (the outage behaviour of test_redis_outages).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np
import pytest
import redis
from redis.crc import key_slot

from stream_app.config import StreamConfig
from stream_app.runtime.connections import create_redis, create_redis_sync
from stream_app.service.redis_window_store import RedisWindowStore
from stream_app.service.window_store import IngestWrites, Seal
from stream_app.tools import devstack_redis_cluster as rc
from tests.test_stream_app import test_bad_input, test_faults, test_redis_outages, test_replay, test_service
from tests.test_stream_app.harness import buffered_readings

# The store's own tests, collected again in this module: their `store` / `stage_factory` / `redis_client`
# fixtures ask for `stream_config`, which this module overrides to point at the cluster.
from tests.test_stream_app.test_ingest_seal import (  # noqa: F401 - collected here again, against the cluster
    stage_factory,
    test_a_batch_read_again_after_a_crash_changes_nothing,
    test_a_reused_id_after_scoring_is_late_and_leaves_the_outcome_alone,
    test_readings_before_the_end_in_the_same_fetch_are_kept_in_order,
    test_the_outcome_of_an_order_does_not_depend_on_batching,
)
from tests.test_stream_app.test_window_store import (  # noqa: F401 - collected here again, against the cluster
    store,
    test_each_abandoned_casting_is_claimed_by_one_sweep_until_the_claim_expires,
    test_the_first_stored_outcome_wins,
)

pytestmark = [pytest.mark.integration, pytest.mark.cluster]


@pytest.fixture
def stream_config(redis_cluster_config_factory) -> StreamConfig:
    """Overrides the suite's `stream_config` for every test of this module (and the fixtures it uses)."""
    return redis_cluster_config_factory()


@pytest.fixture(scope="module")
def cluster_settings() -> rc.RedisClusterSettings:
    return rc.RedisClusterSettings.from_env()


# --------------------------------------------------------------------------- keys and slots


def casting_keys(keys_of: RedisWindowStore, casting_id: str) -> list[str]:
    return [keys_of.window_key(casting_id), keys_of.seal_key(casting_id), keys_of.done_key(casting_id),
            keys_of.claim_key(casting_id)]


def test_a_casting_s_keys_share_a_slot_and_castings_spread_over_every_master(stream_config, redis_client,
                                                                              cluster_settings):
    from stream_app.service.messages import Readings

    ids = [f"SLOT-{i:03d}" for i in range(60)] + ["odd{id}", "{x}", "a:b}c"]  # braces in an id: still one slot
    row = np.array([[1.0, 1500.0, 150.0, 200.0, 25.0]] * 3, dtype=np.float32)
    writes = IngestWrites(readings=[Readings(c, 0, row) for c in ids],
                          seals={c: Seal(3, "t", 0, i) for i, c in enumerate(ids)}, discard=[])

    async def write() -> None:
        client = create_redis(stream_config.redis)
        writer = RedisWindowStore(client, stream_config.redis_prefix, 600)
        await writer.write_ingest(writes, now=1.0)
        await writer.record_outcomes([(c, b"P{}") for c in ids])
        assert await writer.claim(ids, hold_s=60) == ids
        await client.aclose()

    asyncio.run(write())
    keys_of = RedisWindowStore(redis_client, stream_config.redis_prefix, 600)
    # where each key really is: ask each master for the keys it holds (a plain client per node)
    holder: dict[str, int] = {}
    for port in cluster_settings.ports:
        node = redis.Redis(host=cluster_settings.host, port=port)
        for key in node.scan_iter(match=f"{stream_config.redis_prefix}:*", count=1000):
            holder[key.decode()] = port
        node.close()
    masters_used = set()
    for casting_id in ids:
        keys = casting_keys(keys_of, casting_id)
        assert len({key_slot(k.encode()) for k in keys}) == 1, keys
        assert len({holder[k] for k in keys}) == 1, {k: holder.get(k) for k in keys}
        masters_used.add(holder[keys[0]])
    assert masters_used == set(cluster_settings.ports), "castings must spread over every master"
    window = redis_client.hgetall(keys_of.window_key("SLOT-007"))
    assert list(window) == [b"0"] and buffered_readings(redis_client, keys_of.window_key("SLOT-007")) == 3


def test_delete_prefix_finds_the_keys_on_every_master(stream_config, cluster_settings):
    """The replay's and the dataset builder's clean-up: SCAN must walk every master, DEL split per slot."""
    from stream_app.runtime.replay import delete_prefix

    prefix = stream_config.redis_prefix

    async def fill_and_delete() -> None:
        client = create_redis(stream_config.redis)
        pipe = client.pipeline(transaction=False)
        for i in range(300):
            pipe.set(f"{prefix}:win:{{D-{i}}}", i, ex=600)
        await pipe.execute()
        await delete_prefix(client, prefix)
        await client.aclose()

    asyncio.run(fill_and_delete())
    for port in cluster_settings.ports:
        node = redis.Redis(host=cluster_settings.host, port=port)
        assert not list(node.scan_iter(match=f"{prefix}:*")), f"keys left on {port}"
        node.close()


def test_a_plain_client_on_a_cluster_node_and_a_cluster_client_on_a_plain_server_are_named(cluster_settings):
    from stream_app.config import RedisConfig
    from stream_app.errors import ConnectionSettingsError
    from stream_app.runtime.connections import _check_redis

    with pytest.raises(ConnectionSettingsError, match=r"redis\.cluster: .* is a Redis Cluster node but redis\.cluster "
                                                      r"is false"):
        _check_redis(RedisConfig(url=cluster_settings.seed_url))
    with pytest.raises(ConnectionSettingsError, match=r"redis\.cluster: Redis at 127\.0\.0\.1:6379 is not a Redis "
                                                      r"Cluster node .* but redis\.cluster is true"):
        _check_redis(RedisConfig(url="redis://127.0.0.1:6379/0", cluster=True))


def test_every_node_s_connections_pack_with_hiredis(stream_config):
    from stream_app.runtime.connections import HiredisPacking

    async def used_connections() -> list[type]:
        client = create_redis(stream_config.redis)
        pipe = client.pipeline(transaction=False)
        for i in range(30):
            pipe.set(f"{stream_config.redis_prefix}:p:{{{i}}}", i, ex=60)
        await pipe.execute()
        kinds = [type(conn) for node in client.get_nodes() for conn in node._connections]
        await client.aclose()
        return kinds

    kinds = asyncio.run(used_connections())
    assert len(kinds) >= 3 and all(issubclass(k, HiredisPacking) for k in kinds)
    create_redis_sync(stream_config.redis).delete(*(f"{stream_config.redis_prefix}:p:{{{i}}}" for i in range(30)))


# --------------------------------------------------------------------------- the service scenarios


def test_service_on_the_redis_cluster(redis_cluster_service_config, worker_factory, reader_factory, tiny_checkpoint):
    test_service.test_300_castings_over_4_partitions_match_offline_forward(
        redis_cluster_service_config, worker_factory, reader_factory, tiny_checkpoint)


def test_sigkill_and_restart_on_the_redis_cluster(redis_cluster_service_config, worker_factory, reader_factory,
                                                  tiny_checkpoint):
    test_faults.test_sigkill_three_times_and_restart_loses_nothing(
        redis_cluster_service_config, worker_factory, reader_factory, tiny_checkpoint)


def test_two_workers_on_the_redis_cluster(redis_cluster_service_config, worker_factory, reader_factory,
                                          tiny_checkpoint):
    test_faults.test_two_workers_one_killed_mid_stream(
        redis_cluster_service_config, worker_factory, reader_factory, tiny_checkpoint)


def test_bad_input_on_the_redis_cluster(redis_cluster_service_config, worker_factory, reader_factory,
                                        tiny_checkpoint):
    test_bad_input.test_bad_input_is_dead_lettered_and_good_castings_score(
        redis_cluster_service_config, worker_factory, reader_factory, tiny_checkpoint)


def test_replay_on_the_redis_cluster(redis_cluster_service_config, worker_factory, reader_factory, tiny_checkpoint):
    test_replay.test_replay_matches_live_run_and_leaves_live_worker_alone(
        redis_cluster_service_config, worker_factory, reader_factory, tiny_checkpoint)


# --------------------------------------------------------------------------- one master killed mid-stream


@dataclass
class ClusterMaster:
    """One master of the cluster in the shape of the `redis_server` fixture (url, kill, start), so the
    outage scenario of test_redis_outages runs unchanged: `url` stays the seed node, another master dies."""

    settings: rc.RedisClusterSettings
    port: int

    @property
    def url(self) -> str:
        return self.settings.seed_url

    def kill(self) -> None:
        rc.kill_master(self.settings, self.port)

    def start(self) -> None:
        rc.restart_master(self.settings, self.port)


@pytest.fixture
def cluster_master(cluster_settings, redis_cluster_env):
    master = ClusterMaster(cluster_settings, cluster_settings.ports[1])
    yield master
    if not rc._node_running(cluster_settings, master.port):  # a failed test must not leave the cluster down
        master.start()


def test_a_master_killed_during_ingest_is_waited_out(redis_cluster_service_config, worker_factory, reader_factory,
                                                     tiny_checkpoint, cluster_master):
    test_redis_outages.test_redis_killed_during_ingest(
        redis_cluster_service_config, worker_factory, reader_factory, tiny_checkpoint, cluster_master)


# --------------------------------------------------------------------------- the devstack command


def test_devstack_up_is_idempotent_and_down_stops_only_its_own_nodes(tmp_path, cluster_settings, redis_cluster_env):
    """A second cluster of its own (folder and ports), through the CLI: up twice (same pids), status, down."""
    from click.testing import CliRunner

    from stream_app.cli import cli
    from stream_app.tools.devstack import DevstackSettings

    env = {"DEVSTACK_REDIS_CLUSTER_PORT": "17101"}
    mine = rc.RedisClusterSettings(plain=DevstackSettings.from_env(tmp_path), first_port=17101)
    runner = CliRunner()
    try:
        first = runner.invoke(cli, ["devstack", "--dir", str(tmp_path), "up", "--redis-cluster"], env=env)
        assert first.exit_code == 0, first.output
        pids = [row.pid for row in rc.status(mine)]
        again = runner.invoke(cli, ["devstack", "--dir", str(tmp_path), "up", "--redis-cluster"], env=env)
        assert again.exit_code == 0 and [row.pid for row in rc.status(mine)] == pids, again.output
        assert again.output.count("healthy") == 3 and "cluster_state:ok known_nodes:3" in again.output
        assert all((tmp_path / "redis-cluster" / f"node-{p}" / "nodes.conf").exists() for p in mine.ports)
        status = runner.invoke(cli, ["devstack", "--dir", str(tmp_path), "status", "--redis-cluster"], env=env)
        assert status.exit_code == 0, status.output
    finally:
        down = runner.invoke(cli, ["devstack", "--dir", str(tmp_path), "down", "--redis-cluster"], env=env)
    assert down.exit_code == 0 and down.output.count("stopped") == 3, down.output
    assert all(row.healthy for row in rc.status(cluster_settings)), "the suite's cluster must be left alone"


# --------------------------------------------------------------------------- TLS and a password


@pytest.fixture(scope="module")
def secured_cluster_env(tmp_path_factory):
    """A Redis Cluster of its own with TLS on every port (client and bus) and a password, on 17201-17203;
    stopped at the end of the module."""
    import secrets

    from stream_app.tools.certs import ensure_tls_files
    from stream_app.tools.devstack import DevstackSettings

    root = tmp_path_factory.mktemp("secured-cluster")
    settings = rc.RedisClusterSettings(plain=DevstackSettings.from_env(root), first_port=17201,
                                       tls=ensure_tls_files(root / "tls"), password=secrets.token_urlsafe(18))
    try:
        rc.up(settings)
        yield settings, rc.client_env(settings)
    finally:
        rc.down(settings)


def test_the_service_over_tls_and_a_password_on_the_cluster(secured_cluster_env, unique_name, tiny_checkpoint,
                                                            worker_factory, reader_factory):
    from stream_app.config import load_config
    from tests.test_stream_app.conftest import redis_free_environ
    from tests.test_stream_app.harness import create_topics

    settings, env = secured_cluster_env
    conf = settings.node_dir(settings.first_port) / "redis.conf"
    assert conf.stat().st_mode & 0o777 == 0o600
    with pytest.raises(redis.exceptions.ConnectionError):  # the plain port is closed: TLS only
        redis.Redis(host=settings.host, port=settings.first_port, socket_timeout=2).ping()

    def config(**overrides):
        app_id = unique_name("rcluster-tls")
        topics = {"sensors": f"{app_id}.sensors", "predictions": f"{app_id}.predictions",
                  "deadletter": f"{app_id}.deadletter", **overrides.pop("topics", {})}
        model = {"checkpoint": str(tiny_checkpoint), "device": "cpu", "torch_threads": 1}
        cfg = load_config(environ=redis_free_environ(env), app_id=app_id, topics=topics, model=model, **overrides)
        assert cfg.redis.cluster and cfg.redis.url.startswith("rediss://") and cfg.redis.password is not None
        create_topics(cfg)
        return cfg

    test_service.test_300_castings_over_4_partitions_match_offline_forward(config, worker_factory, reader_factory,
                                                                           tiny_checkpoint)
    from stream_app.errors import ConnectionSettingsError
    from stream_app.runtime.connections import _check_redis

    with pytest.raises(ConnectionSettingsError, match=r"redis.password: Redis at 127\.0\.0\.1:17201 refused"):
        _check_redis(config().redis.model_copy(update={"password": None}))
