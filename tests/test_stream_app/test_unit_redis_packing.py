"""The asyncio Redis client packs commands with hiredis: the same bytes on the wire as redis-py's own."""

from __future__ import annotations

import pytest
import redis.asyncio
from redis.exceptions import DataError

from stream_app.config import load_config
from stream_app.runtime.connections import HiredisPacking, create_redis

COMMANDS = [
    ("HSET", "csd:win:C-1", 0, b"\x00\x01\x02", 1, b"\xff" * 20),  # the window store's rows
    ("EXPIRE", "csd:win:C-1", 86400),
    ("CONFIG GET", "maxmemory"),  # a command name with a literal argument
    ("SET", "k", "é"),
    ("SET", "k", 0.1),
    ("SET", "k", 1 / 3),
    ("SET", "k", -5),
    ("SET", "k", 10**20),
    ("SET", "k", memoryview(b"ab")),
    ("HSET", "csd:seal:C-1", "n", 300, "o", 12),
]


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/0", "rediss://127.0.0.1:6380/0", "unix:///tmp/r.sock"])
def test_every_connection_kind_packs_with_hiredis(url):
    cfg = load_config(environ={"STREAM_APP__REDIS__URL": url})
    cls = create_redis(cfg.redis).connection_pool.connection_class
    assert issubclass(cls, HiredisPacking) and cls.__mro__[2].__module__ == "redis.asyncio.connection"


@pytest.mark.parametrize("args", COMMANDS, ids=[str(c[0]) + "-" + type(c[-1]).__name__ for c in COMMANDS])
def test_hiredis_packing_gives_redis_py_s_bytes(args):
    class Packing(HiredisPacking, redis.asyncio.Connection):
        pass

    assert b"".join(Packing().pack_command(*args)) == b"".join(redis.asyncio.Connection().pack_command(*args))


@pytest.mark.parametrize("value", [True, None, object()])
def test_what_redis_py_refuses_hiredis_refuses_as_a_data_error(value):
    class Packing(HiredisPacking, redis.asyncio.Connection):
        pass

    with pytest.raises(DataError):
        redis.asyncio.Connection().pack_command("SET", "k", value)
    with pytest.raises(DataError):
        Packing().pack_command("SET", "k", value)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:17001/0", "rediss://127.0.0.1:17001/0"])
def test_a_cluster_client_packs_with_hiredis_on_every_node(url):
    """The cluster client builds each node it discovers from its `connection_kwargs`: the class there and in
    the seed node is the packed one (plain or TLS, as the URL chose). No server needed: nothing connects yet;
    test_redis_cluster.py checks the connections of a live cluster."""
    import redis.asyncio.cluster

    cfg = load_config(environ={"STREAM_APP__REDIS__URL": url, "STREAM_APP__REDIS__CLUSTER": "true"})
    client = create_redis(cfg.redis)
    assert isinstance(client, redis.asyncio.cluster.RedisCluster)
    want = redis.asyncio.SSLConnection if url.startswith("rediss") else redis.asyncio.Connection
    for cls in (client.connection_kwargs["connection_class"], *(n.connection_class for n in client.startup_nodes)):
        assert issubclass(cls, HiredisPacking) and cls.__mro__[2] is want
