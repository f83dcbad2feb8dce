"""Redis Cluster without services: the `redis.cluster` setting, which cluster failures are outages and which
are settings errors naming `redis.cluster`, the cluster devstack's ports and client settings."""

from __future__ import annotations

import pytest
import redis.exceptions

from stream_app.config import ConfigError, RedisConfig, load_config
from stream_app.runtime.connection_errors import explain_redis_error, is_misconfiguration
from stream_app.runtime.outages import is_outage
from tests.test_stream_app.test_unit_security import wrapped  # `outer` raised from `inner`, as the clients do

CLUSTER = RedisConfig(url="redis://127.0.0.1:17001/0", cluster=True)
PLAIN = RedisConfig(url="redis://127.0.0.1:17001/0")


def test_the_cluster_setting_comes_from_the_environment_and_wants_a_tcp_url_on_db_0():
    assert not load_config(environ={}).redis.cluster
    cfg = load_config(environ={"STREAM_APP__REDIS__CLUSTER": "true", "STREAM_APP__REDIS__URL": CLUSTER.url})
    assert cfg.redis.cluster and cfg.redis.url == CLUSTER.url
    for url, text in (("redis://127.0.0.1:17001/2", "only database 0"), ("unix:///tmp/r.sock", "over TCP")):
        with pytest.raises(ConfigError, match=f"redis.cluster: .*{text}"):
            load_config(environ={"STREAM_APP__REDIS__CLUSTER": "true", "STREAM_APP__REDIS__URL": url})


def test_a_cluster_that_cannot_be_reached_is_an_outage():
    for exc in (wrapped(redis.exceptions.RedisClusterException("Redis Cluster cannot be connected. Please provide at "
                                                              "least one reachable node: Error 111"),
                       redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:17001.")),
                redis.exceptions.RedisClusterException("All slots are not covered after query all startup_nodes."),
                redis.exceptions.ClusterDownError("CLUSTERDOWN The cluster is down")):
        assert is_outage(exc) and not is_misconfiguration(exc), exc
        assert explain_redis_error(exc, CLUSTER) is None


def test_a_plain_client_on_a_cluster_node_names_redis_cluster():
    exc = redis.exceptions.MovedError("3999 127.0.0.1:17002")
    assert is_misconfiguration(exc) and not is_outage(exc)
    error = explain_redis_error(exc, PLAIN)
    assert error is not None and error.keys == ["redis.cluster"]
    assert str(error).startswith("redis.cluster: Redis at 127.0.0.1:17001 is a Redis Cluster node but "
                                 "redis.cluster is false")


def test_a_cluster_client_on_a_plain_server_names_redis_cluster():
    # what redis-py raises: "cannot be connected" from "Cluster mode is not enabled" from CLUSTER SLOTS's error
    inner = wrapped(redis.exceptions.RedisClusterException("Cluster mode is not enabled on this node"),
                   redis.exceptions.ResponseError("ERR This instance has cluster support disabled"))
    exc = wrapped(redis.exceptions.RedisClusterException("Redis Cluster cannot be connected. Please provide at least "
                                                        "one reachable node: Cluster mode is not enabled on this node"),
                 inner)
    assert is_misconfiguration(exc) and not is_outage(exc)
    error = explain_redis_error(exc, CLUSTER)
    assert error is not None and error.keys == ["redis.cluster"]
    assert "is not a Redis Cluster node (cluster mode is not enabled on it) but redis.cluster is true" in str(error)


def test_refused_credentials_behind_the_cluster_client_name_the_password():
    exc = wrapped(redis.exceptions.RedisClusterException("Redis Cluster cannot be connected."),
                 redis.exceptions.AuthenticationError("invalid username-password pair or user is disabled."))
    assert is_misconfiguration(exc)
    error = explain_redis_error(exc, CLUSTER)
    assert error is not None and error.keys == ["redis.password"]


def test_the_cluster_devstack_takes_its_own_ports_and_gives_the_client_its_settings(tmp_path, monkeypatch):
    from stream_app.tools import devstack_redis_cluster as rc

    monkeypatch.delenv("DEVSTACK_REDIS_CLUSTER_PORT", raising=False)
    settings = rc.RedisClusterSettings.from_env(tmp_path)
    assert settings.ports == [17001, 17002, 17003] and settings.root == tmp_path / "redis-cluster"
    plain = settings.plain
    taken = {plain.kafka_port, plain.kafka_controller_port, plain.redis_port, 6380, 9094, 9095}
    assert not taken & {p + bus for p in settings.ports for bus in (0, 10000)}
    env = rc.client_env(settings)
    assert env == {"STREAM_APP__REDIS__URL": "redis://127.0.0.1:17001/0", "STREAM_APP__REDIS__CLUSTER": "true"}
    assert load_config(environ=env).redis.cluster
    monkeypatch.setenv("DEVSTACK_REDIS_CLUSTER_PORT", "18001")
    assert rc.RedisClusterSettings.from_env(tmp_path).ports == [18001, 18002, 18003]


def test_a_casting_s_keys_carry_its_id_as_a_hash_tag():
    from redis.crc import key_slot

    from stream_app.service.redis_window_store import RedisWindowStore

    store = RedisWindowStore(None, "csd:app", 60)  # key names only
    keys = [store.window_key("C-1"), store.seal_key("C-1"), store.done_key("C-1"), store.claim_key("C-1")]
    assert keys == ["csd:app:win:{C-1}", "csd:app:seal:{C-1}", "csd:app:done:{C-1}", "csd:app:claim:{C-1}"]
    assert {key_slot(k.encode()) for k in keys} == {key_slot(b"C-1")}
    assert store.window_key("C-1") != store.window_key("C-2")
