"""A local Redis Cluster of three masters for development and tests, from Debian's ``redis-server``.

Beside the plaintext stack (`devstack`), with its own ports and folder, ``<devstack dir>/redis-cluster/``:

    node-17001/, node-17002/, node-17003/   each master's redis.conf (mode 0600), AOF (appendonlydir/),
                                            nodes.conf, redis.log, pid file

Each master runs in cluster mode (``cluster-enabled yes``) with AOF like the plain stack's Redis, and no
replicas: a master that dies takes its slots down until it is started again (then it rejoins from its
``nodes.conf`` and replays its AOF), which is what the fault tests want to see. ``up`` joins fresh nodes
with ``redis-cli --cluster create ... --cluster-replicas 0`` and waits until every node says
``cluster_state:ok``; it is idempotent. ``down`` stops only the processes whose pid files it wrote.
Ports: ``$DEVSTACK_REDIS_CLUSTER_PORT`` (17001) and the next two. Settings given a `tls` folder and a
`password` make a secured cluster instead (TLS only on the client and the bus ports, ``requirepass``),
which the tests use to show that TLS and passwords work on a cluster as on one server.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stream_app.config import ENV_PREFIX
from stream_app.errors import DevstackError
from stream_app.tools import devstack as ds
from stream_app.tools.certs import TlsFiles

log = logging.getLogger(__name__)

MASTERS = 3
#: how long a master may not answer before the others mark it failed (the cluster then stops serving)
NODE_TIMEOUT_MS = 3000


@dataclass(frozen=True)
class RedisClusterSettings:
    """Where the cluster lives (``redis-cluster/`` under the plain stack's folder) and its first port."""

    plain: ds.DevstackSettings
    first_port: int = 17001
    tls: TlsFiles | None = None  # a secured cluster: TLS on every port (client and bus), this CA's certificate
    password: str | None = None  # ``requirepass``/``masterauth``: never on a command line, only in redis.conf

    @classmethod
    def from_env(cls, root: Path | None = None) -> RedisClusterSettings:
        return cls(plain=ds.DevstackSettings.from_env(root),
                   first_port=int(os.environ.get("DEVSTACK_REDIS_CLUSTER_PORT", 17001)))

    @property
    def host(self) -> str:
        return self.plain.host

    @property
    def root(self) -> Path:
        return self.plain.root / "redis-cluster"

    @property
    def ports(self) -> list[int]:
        return [self.first_port + i for i in range(MASTERS)]

    def node_dir(self, port: int) -> Path:
        return self.root / f"node-{port}"

    def pidfile(self, port: int) -> Path:
        return self.node_dir(port) / "redis.pid"

    def log_file(self, port: int) -> Path:
        return self.node_dir(port) / "redis.log"

    @property
    def seed_url(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.first_port}/0"


def client_env(settings: RedisClusterSettings) -> dict[str, str]:
    """The ``STREAM_APP__*`` variables that point a client's Redis at the cluster (one seed node: the
    cluster client discovers the others), with the CA and the password of a secured one."""
    env = {f"{ENV_PREFIX}REDIS__URL": settings.seed_url, f"{ENV_PREFIX}REDIS__CLUSTER": "true"}
    if settings.tls:
        env[f"{ENV_PREFIX}REDIS__SSL_CAFILE"] = str(settings.tls.ca_cert)
    if settings.password:
        env[f"{ENV_PREFIX}REDIS__PASSWORD"] = settings.password
    return env


def _node_client(settings: RedisClusterSettings, port: int, timeout_s: float):
    """A plain client to one node (PING, CLUSTER INFO), with the cluster's TLS and password."""
    import redis

    kwargs: dict[str, Any] = {"socket_timeout": timeout_s, "socket_connect_timeout": timeout_s,
                              "password": settings.password}
    if settings.tls:
        kwargs.update(ssl=True, ssl_ca_certs=str(settings.tls.ca_cert))
    return redis.Redis(host=settings.host, port=port, **kwargs)


def _redis_conf(settings: RedisClusterSettings, port: int) -> str:
    lines = [
        f"bind {settings.host}",
        f"dir {settings.node_dir(port)}",
        "cluster-enabled yes",
        "cluster-config-file nodes.conf",  # in `dir`: each node has its own
        f"cluster-node-timeout {NODE_TIMEOUT_MS}",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "daemonize yes",
        f"pidfile {settings.pidfile(port)}",
        f"logfile {settings.log_file(port)}",
    ]
    if settings.tls:
        tls = settings.tls
        lines += ["port 0", f"tls-port {port}", "tls-cluster yes", f"tls-cert-file {tls.server_cert}",
                  f"tls-key-file {tls.server_key}", f"tls-ca-cert-file {tls.ca_cert}", "tls-auth-clients no"]
    else:
        lines.append(f"port {port}")
    if settings.password:
        lines += [f"requirepass {settings.password}", f"masterauth {settings.password}"]
    return "\n".join([*lines, ""])


# --------------------------------------------------------------------------- one node


def _marker(settings: RedisClusterSettings, port: int) -> str:
    # a daemonized redis-server shows "redis-server HOST:PORT [cluster]" as its command line
    return f"{settings.host}:{port} [cluster]"


def _cluster_info(settings: RedisClusterSettings, port: int) -> dict[str, str]:
    client = _node_client(settings, port, 2)
    try:
        return {str(k): str(v) for k, v in client.cluster("INFO").items()}
    finally:
        client.close()


def _node_answers(settings: RedisClusterSettings, port: int) -> tuple[bool, str]:
    """Healthy when the node answers and sees the whole cluster serving every slot."""
    import redis

    try:
        info = _cluster_info(settings, port)
    except redis.RedisError as exc:
        return False, str(exc)
    state = info.get("cluster_state", "?")
    detail = f"cluster_state:{state} known_nodes:{info.get('cluster_known_nodes')} " \
             f"slots_ok:{info.get('cluster_slots_ok')}"
    return state == "ok", detail


def _node_status(settings: RedisClusterSettings, port: int) -> ds.ServiceStatus:
    pid = ds._read_pid(settings.pidfile(port))
    running = ds._is_ours(pid, _marker(settings, port))
    healthy, detail = _node_answers(settings, port) if running else (False, "")
    return ds.ServiceStatus(f"redis-cluster {port}", pid if running else None, running, healthy,
                            f"{settings.host}:{port} {detail}".strip())


def _node_running(settings: RedisClusterSettings, port: int) -> bool:
    return ds._is_ours(ds._read_pid(settings.pidfile(port)), _marker(settings, port))


def _pinged(settings: RedisClusterSettings, port: int) -> tuple[bool, str]:
    import redis

    client = _node_client(settings, port, 1)
    try:
        return bool(client.ping()), "PONG"
    except redis.RedisError as exc:
        return False, str(exc)
    finally:
        client.close()


def _start_node(settings: RedisClusterSettings, port: int) -> None:
    """Start one master (idempotent); its AOF and nodes.conf survive restarts, so it rejoins with its data."""
    if _node_running(settings, port):
        return
    server = shutil.which("redis-server")
    if server is None:
        raise DevstackError("redis-server not found: install it with `apt-get install redis-server`")
    if ds._port_open(settings.host, port) or ds._port_open(settings.host, port + 10000):
        raise DevstackError(f"port {port} (or its cluster bus port {port + 10000}) is taken by a process this "
                            "devstack did not start; stop it or choose other ports with DEVSTACK_REDIS_CLUSTER_PORT")
    conf = settings.node_dir(port) / "redis.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # may hold the password
    with os.fdopen(fd, "w") as out:
        out.write(_redis_conf(settings, port))
    subprocess.run([server, str(conf)], check=True)
    ds._wait_until(lambda: _pinged(settings, port), f"redis cluster node {port}", 20, settings.log_file(port))


def _join(settings: RedisClusterSettings) -> None:
    """Create the cluster from fresh nodes; leave a formed one alone; refuse a half-formed one."""
    infos = {port: _cluster_info(settings, port) for port in settings.ports}
    if all(int(info.get("cluster_known_nodes", 0)) == MASTERS for info in infos.values()):
        return  # formed earlier (nodes.conf): it only needs to settle
    if any(int(info.get("cluster_known_nodes", 0)) != 1 or int(info.get("cluster_slots_assigned", 0))
           for info in infos.values()):
        raise DevstackError(f"the redis cluster in {settings.root} is half formed ({infos}); stop it with "
                            f"`stream-app devstack down --redis-cluster` and remove {settings.root}")
    cli = shutil.which("redis-cli")
    if cli is None:
        raise DevstackError("redis-cli not found: install it with `apt-get install redis-tools`")
    secured = ["--tls", "--cacert", str(settings.tls.ca_cert)] if settings.tls else []
    env = {**os.environ, "REDISCLI_AUTH": settings.password} if settings.password else None  # not in `ps`
    result = subprocess.run(
        [cli, *secured, "--cluster", "create", *(f"{settings.host}:{p}" for p in settings.ports),
         "--cluster-replicas", "0", "--cluster-yes"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    if result.returncode != 0:
        raise DevstackError(f"redis-cli --cluster create failed:\n{result.stdout}\n{result.stderr}")
    log.info("redis cluster created on ports %s", settings.ports)


def _wait_cluster_ok(settings: RedisClusterSettings, timeout_s: float = 60) -> None:
    def every_node_ok() -> tuple[bool, str]:
        answers = [_node_answers(settings, port) for port in settings.ports]
        return all(ok for ok, _ in answers), "; ".join(f"{p}: {d}" for p, (_, d) in zip(settings.ports, answers,
                                                                                          strict=True))

    ds._wait_until(every_node_ok, "redis cluster", timeout_s, settings.log_file(settings.first_port))


# --------------------------------------------------------------------------- public API


def up(settings: RedisClusterSettings) -> list[ds.ServiceStatus]:
    """Start the three masters, join them into a cluster if they are fresh, wait for cluster_state:ok."""
    settings.root.mkdir(parents=True, exist_ok=True)
    for port in settings.ports:
        _start_node(settings, port)
    _join(settings)
    _wait_cluster_ok(settings)
    log.info("redis cluster up on %s:%d-%d", settings.host, settings.ports[0], settings.ports[-1])
    return status(settings)


def down(settings: RedisClusterSettings) -> list[ds.ServiceStatus]:
    for port in settings.ports:
        pidfile = settings.pidfile(port)
        pid = ds._read_pid(pidfile)
        if ds._is_ours(pid, _marker(settings, port)):
            assert pid is not None
            ds._stop_pid(pid, f"redis cluster node {port}")
        elif pid is not None:
            log.info("redis cluster node %d: pid file names %d, which is not our process any more; leaving it",
                     port, pid)
        pidfile.unlink(missing_ok=True)
    return status(settings)


def status(settings: RedisClusterSettings) -> list[ds.ServiceStatus]:
    return [_node_status(settings, port) for port in settings.ports]


def kill_master(settings: RedisClusterSettings, port: int) -> None:
    """SIGKILL one master, as a crash would (for fault tests); `restart_master` brings it back."""
    pid = ds._read_pid(settings.pidfile(port))
    if not ds._is_ours(pid, _marker(settings, port)):
        raise DevstackError(f"redis cluster node {port} is not running")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and ds._cmdline(pid) != "" and time.monotonic() < deadline:
        time.sleep(0.05)


def restart_master(settings: RedisClusterSettings, port: int, timeout_s: float = 60) -> None:
    """Start a killed master again (it replays its AOF and rejoins) and wait until the cluster is ok."""
    _start_node(settings, port)
    _wait_cluster_ok(settings, timeout_s)
