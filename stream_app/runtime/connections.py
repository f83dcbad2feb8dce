"""Clients for Kafka and Redis built from config, so every component connects the same way.

Every client of the project (worker, replay, simulator, demo, admin calls, devstack probes, tests,
benchmarks) takes its settings from here: `aiokafka_kwargs`, `kafka_python_kwargs`,
`faust_broker_credentials`, `redis_kwargs` / `create_redis` / `create_redis_sync`; and each command calls
`check_connections` first, so wrong credentials or TLS settings stop it with one clear error instead of
an endless wait. Secrets come from config (which takes them from the environment) and are never logged.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import hiredis
import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.cluster
from redis.exceptions import DataError

from stream_app.config import KafkaConfig, RedisConfig, StreamConfig


def redis_kwargs(cfg: RedisConfig) -> dict[str, Any]:
    """Keyword arguments for redis-py's ``from_url`` beside the URL (which carries host, port, db and the
    ACL user name): timeouts, the password and, for ``rediss://``, the CA that signed the server's certificate."""
    kwargs: dict[str, Any] = {"socket_timeout": cfg.socket_timeout_s, "socket_connect_timeout": 5}
    if cfg.password is not None:
        kwargs["password"] = cfg.password.get_secret_value()
    if cfg.url.startswith("rediss://"):
        kwargs["ssl_cert_reqs"] = "required"
        if cfg.ssl_cafile is not None:
            kwargs["ssl_ca_certs"] = str(cfg.ssl_cafile)
    return kwargs


#: what `create_redis` returns: one server, or a Redis Cluster (`redis.cluster: true`); the same commands
AsyncRedisClient = redis.asyncio.Redis | redis.asyncio.cluster.RedisCluster
SyncRedisClient = redis.Redis | redis.cluster.RedisCluster


def create_redis(cfg: RedisConfig) -> AsyncRedisClient:
    """An asyncio Redis client, or a Redis Cluster client when `redis.cluster` is set (the URL is one seed
    node; the client discovers the other masters); ``rediss://`` URLs use TLS. Its commands are packed by
    hiredis."""
    if cfg.cluster:
        return _packed_cluster(redis.asyncio.cluster.RedisCluster.from_url(cfg.url, **redis_kwargs(cfg)))
    client = redis.asyncio.Redis.from_url(cfg.url, **redis_kwargs(cfg))
    client.connection_pool.connection_class = _packed_by_hiredis(client.connection_pool.connection_class)
    return client


def _packed_cluster(client: redis.asyncio.cluster.RedisCluster) -> redis.asyncio.cluster.RedisCluster:
    """The cluster client takes no `connection_class` argument: it picks Connection or SSLConnection itself
    and keeps the choice in `connection_kwargs`, a dict that its node manager shares and from which it
    builds every node it discovers (``ClusterNode(host, port, **connection_kwargs)``). Swapping the class
    there, and in the seed nodes already built from it, packs every node's commands by hiredis. Done
    before the first command, so no connection exists yet."""
    packed = _packed_by_hiredis(client.connection_kwargs["connection_class"])
    client.connection_kwargs["connection_class"] = packed
    for node in (*client.startup_nodes, *client.nodes_manager.startup_nodes.values()):
        node.connection_class = packed
    return client


@functools.cache
def _packed_by_hiredis(connection_class: type) -> type:
    """The connection class (plain, TLS or unix socket, as the URL chose) with `HiredisPacking` mixed in."""
    return type(f"Hiredis{connection_class.__name__}", (HiredisPacking, connection_class), {})


_PLAIN_ARGUMENTS = frozenset((bytes, str, int, float))  # what hiredis packs as they are


class HiredisPacking:
    """Packs commands with hiredis, as redis-py's sync connections do when it is installed; its asyncio
    connections encode every argument in Python, which was half of chunked ingest (the window store
    writes two arguments per reading; docs/BENCHMARKS.md §2b). Mixed in before the connection class."""

    def pack_command(self, *args: Any) -> list[bytes]:
        # as redis-py's HiredisRespSerializer: a command name may carry literal arguments ("CONFIG GET")
        if isinstance(args[0], str):
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        if not _PLAIN_ARGUMENTS.issuperset(map(type, args)):  # the common case is checked in C, not per argument
            args = tuple(bytes(a) if isinstance(a, bytearray | memoryview) else a for a in args)
        try:
            return [hiredis.pack_command(args)]
        except TypeError as exc:
            raise DataError(str(exc)) from None


async def ping_redis(client: AsyncRedisClient) -> None:
    """PING the server, or every master of a cluster: a cluster client's plain PING asks one node, which
    answers while another master (and its share of the castings) is down."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        await client.ping(target_nodes=redis.asyncio.cluster.RedisCluster.PRIMARIES)
    else:
        await client.ping()


def create_redis_sync(cfg: RedisConfig) -> SyncRedisClient:
    """The blocking client (redis-py packs its commands with hiredis itself); a cluster client connects to
    the seed node at once, to learn the cluster's layout."""
    if cfg.cluster:
        return redis.cluster.RedisCluster.from_url(cfg.url, **redis_kwargs(cfg))
    return redis.Redis.from_url(cfg.url, **redis_kwargs(cfg))


def _ssl_context(cfg: KafkaConfig) -> ssl.SSLContext | None:
    if cfg.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return ssl.create_default_context(cafile=str(cfg.ssl_cafile) if cfg.ssl_cafile else None)


def aiokafka_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """Keyword arguments shared by aiokafka producers, consumers and admin clients."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": ",".join(cfg.bootstrap_servers),
        "security_protocol": cfg.security_protocol,
        "client_id": cfg.client_id,
    }
    context = _ssl_context(cfg)
    if context is not None:
        kwargs["ssl_context"] = context
    if cfg.sasl_mechanism:
        kwargs["sasl_mechanism"] = cfg.sasl_mechanism
        kwargs["sasl_plain_username"] = cfg.sasl_username
        kwargs["sasl_plain_password"] = cfg.sasl_password.get_secret_value() if cfg.sasl_password else None
    return kwargs


def kafka_python_kwargs(cfg: KafkaConfig) -> dict[str, Any]:
    """Keyword arguments for kafka-python clients (simulator, tests)."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": cfg.bootstrap_servers,
        "security_protocol": cfg.security_protocol,
        "client_id": cfg.client_id,
    }
    if cfg.ssl_cafile:
        kwargs["ssl_cafile"] = str(cfg.ssl_cafile)
    if cfg.sasl_mechanism:
        kwargs["sasl_mechanism"] = cfg.sasl_mechanism
        kwargs["sasl_plain_username"] = cfg.sasl_username
        kwargs["sasl_plain_password"] = cfg.sasl_password.get_secret_value() if cfg.sasl_password else None
    return kwargs


def faust_broker_credentials(cfg: KafkaConfig) -> Any:
    """faust's credentials object for SASL/SSL, or None for PLAINTEXT."""
    import faust

    context = _ssl_context(cfg)
    if cfg.sasl_mechanism:
        password = cfg.sasl_password.get_secret_value() if cfg.sasl_password else ""
        return faust.SASLCredentials(
            username=cfg.sasl_username, password=password, mechanism=cfg.sasl_mechanism, ssl_context=context
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


# --------------------------------------------------------------------------- start-up check


def check_connections(cfg: StreamConfig, *, kafka: bool = True, redis: bool = True) -> None:
    """Connect once to the broker (TCP, TLS, SASL) and Redis (TLS, AUTH, PING) with this process's settings,
    before any work starts. A server that is down is waited for (the outage policy, `outages.Dependency`);
    one that refuses the settings raises `ConnectionSettingsError`, naming the setting, at once. Every
    command that talks to Kafka or Redis calls this first (blocking; from a coroutine use
    ``asyncio.to_thread``)."""
    from stream_app.runtime.outages import Dependency

    if kafka:
        Dependency.from_config("kafka", cfg.resilience).call_sync(lambda: _check_kafka(cfg.kafka), "connection check")
    if redis:
        Dependency.from_config("redis", cfg.resilience).call_sync(lambda: _check_redis(cfg.redis), "connection check")


def check_settings_once(cfg: StreamConfig, *, kafka: bool = True, redis: bool = True) -> None:
    """`check_connections` without the waiting, for bounded jobs (`stream-app dataset`) that stop with their
    own message when a server does not answer: refused settings raise `ConnectionSettingsError` naming the
    setting; a server that is down or unreachable is left to the job's own error."""
    from stream_app.errors import ConnectionSettingsError

    checks = ([lambda: _check_kafka(cfg.kafka)] if kafka else []) + ([lambda: _check_redis(cfg.redis)] if redis else [])
    for check in checks:
        try:
            check()
        except ConnectionSettingsError:
            raise
        except Exception:  # noqa: BLE001, S112 - an outage: the job reports it in its own words
            continue


def _check_kafka(cfg: KafkaConfig) -> None:
    """Succeeds if one bootstrap server accepts the settings; raises the first refusal of the settings,
    else the last connection error (an outage)."""
    import asyncio

    from aiokafka.conn import create_conn

    from stream_app.runtime.connection_errors import explain_kafka_error

    kwargs = aiokafka_kwargs(cfg)
    kwargs.pop("bootstrap_servers")

    async def connect(host: str, port: int) -> None:
        conn = await create_conn(host, port, request_timeout_ms=10_000, **kwargs)
        await conn.close()  # the future of the socket's close: no transport left open behind us

    last: BaseException | None = None
    for server in cfg.bootstrap_servers:
        host, _, port = server.rpartition(":")
        try:
            # a loop of its own (a loop_factory keeps the thread's current loop, which faust may hold, as it
            # is); the runner cancels what the client left behind and closes the loop
            with asyncio.Runner(loop_factory=asyncio.new_event_loop) as runner:
                runner.run(asyncio.wait_for(connect(host or server, int(port or 9092)), timeout=15))
            return
        except Exception as exc:  # noqa: BLE001 - sorted below into a settings error or an outage
            settings_error = explain_kafka_error(exc, cfg, server)
            if settings_error is not None:
                raise settings_error from None
            last = exc
    assert last is not None
    raise last


def _check_redis(cfg: RedisConfig) -> None:
    from stream_app.runtime.connection_errors import explain_redis_error, plain_client_on_cluster

    client = None
    try:
        client = create_redis_sync(cfg)  # a cluster client connects here
        client.ping()
        if not cfg.cluster:
            plain_client_on_cluster(client, cfg)  # PING alone passes on a cluster node; every key would not
    except Exception as exc:  # noqa: BLE001 - sorted below into a settings error or an outage
        settings_error = explain_redis_error(exc, cfg)
        if settings_error is not None:
            raise settings_error from None
        raise
    finally:
        if client is not None:
            client.close()
