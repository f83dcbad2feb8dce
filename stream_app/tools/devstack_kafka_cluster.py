"""A local Kafka cluster of three KRaft nodes, for the replication and broker-failure tests.

A third stack beside the plaintext one (`devstack`) and the secured one, with its own ports, processes and
state folder, ``<devstack dir>/kafka-cluster/``::

    cluster.id                 the cluster id every node is formatted with
    client.env                 the STREAM_APP__* settings a client needs (`client_env`)
    node-N/kafka/              node N's data, server.properties, kafka.log and kafka.pid (N = 1, 2, 3)
    node-N/kafka-jars          a link to the plaintext stack's jars (one copy, fetched by Maven once)

Each node is broker and controller in one process (node ids 1-3) and the controller quorum is static
(``controller.quorum.voters``): two nodes keep the quorum, one alone does not. Client ports are
``DEVSTACK_KAFKA_CLUSTER_PORT`` (19092) and the next two; controller ports follow (19095-19097).
Brokers default to replication 3 and ``min.insync.replicas`` 2, so a write acknowledged with
``acks=all`` is on two nodes at least, and with two nodes down producers wait instead of losing data.

``up`` starts the three processes together (a node with static voters cannot come up alone), then waits
until each answers and the cluster reports three brokers; ``kill_node`` / ``start_node`` crash and restart
one node for the fault tests; ``down`` stops only the processes whose pid files it wrote.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path

from stream_app.config import ENV_PREFIX
from stream_app.errors import DevstackError
from stream_app.tools import devstack as ds

log = logging.getLogger(__name__)

NODE_IDS = (1, 2, 3)
#: the nodes this process started, by pid: kept so they are reaped when killed (no zombie) and not reported
#: as "still running" when a short-lived caller (a test) lets go of them; the nodes outlive it either way
_launched: dict[int, subprocess.Popen] = {}
REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2


@dataclass(frozen=True)
class ClusterSettings:
    """Ports (env: DEVSTACK_KAFKA_CLUSTER_PORT, the first client port) and where the cluster lives."""

    plain: ds.DevstackSettings
    first_port: int = 19092
    heap: str = "512m"  # three JVMs beside the plaintext stack on a 2-core, 24 GiB machine

    @classmethod
    def from_env(cls, root: Path | None = None) -> ClusterSettings:
        return cls(plain=ds.DevstackSettings.from_env(root),
                   first_port=int(os.environ.get("DEVSTACK_KAFKA_CLUSTER_PORT", 19092)))

    @property
    def root(self) -> Path:
        return self.plain.root / "kafka-cluster"

    @property
    def client_env_file(self) -> Path:
        return self.root / "client.env"

    @property
    def cluster_id_file(self) -> Path:
        return self.root / "cluster.id"

    def client_port(self, node_id: int) -> int:
        return self.first_port + node_id - 1

    def controller_port(self, node_id: int) -> int:
        return self.first_port + len(NODE_IDS) + node_id - 1

    def node(self, node_id: int) -> ds.DevstackSettings:
        """Node `node_id` in the plaintext stack's terms (its folder, pid file, ports, heap)."""
        if node_id not in NODE_IDS:
            raise DevstackError(f"no kafka node {node_id}: the cluster has nodes {', '.join(map(str, NODE_IDS))}")
        return replace(self.plain, root=self.root / f"node-{node_id}", kafka_port=self.client_port(node_id),
                       kafka_controller_port=self.controller_port(node_id), kafka_heap=self.heap)

    @property
    def bootstrap_servers(self) -> list[str]:
        return [f"{self.plain.host}:{self.client_port(n)}" for n in NODE_IDS]

    @property
    def voters(self) -> str:
        return ",".join(f"{n}@{self.plain.host}:{self.controller_port(n)}" for n in NODE_IDS)


def client_env(settings: ClusterSettings) -> dict[str, str]:
    """The ``STREAM_APP__*`` settings that point a client at the cluster and make its topics replicated."""
    return {
        f"{ENV_PREFIX}KAFKA__BOOTSTRAP_SERVERS": ",".join(settings.bootstrap_servers),
        f"{ENV_PREFIX}TOPICS__REPLICATION_FACTOR": str(REPLICATION_FACTOR),
        f"{ENV_PREFIX}TOPICS__MIN_INSYNC_REPLICAS": str(MIN_INSYNC_REPLICAS),
    }


def node_properties(settings: ClusterSettings, node_id: int) -> str:
    node = settings.node(node_id)
    host = node.host
    return "\n".join([
        "process.roles=broker,controller",
        f"node.id={node_id}",
        f"controller.quorum.voters={settings.voters}",
        f"listeners=PLAINTEXT://{host}:{node.kafka_port},CONTROLLER://{host}:{node.kafka_controller_port}",
        f"advertised.listeners=PLAINTEXT://{host}:{node.kafka_port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={node.kafka_dir / 'data'}",
        # every topic, the internal ones included, on all three nodes, acknowledged by two at least
        f"default.replication.factor={REPLICATION_FACTOR}",
        f"min.insync.replicas={MIN_INSYNC_REPLICAS}",
        f"offsets.topic.replication.factor={REPLICATION_FACTOR}",
        "offsets.topic.num.partitions=10",
        f"transaction.state.log.replication.factor={REPLICATION_FACTOR}",
        f"transaction.state.log.min.isr={MIN_INSYNC_REPLICAS}",
        f"share.coordinator.state.topic.replication.factor={REPLICATION_FACTOR}",
        f"share.coordinator.state.topic.min.isr={MIN_INSYNC_REPLICAS}",
        "unclean.leader.election.enable=false",  # a stale replica never becomes leader: no acknowledged write lost
        # a crashed node is fenced (its partitions get new leaders, it leaves the ISRs) after 6 s, not 9
        "broker.heartbeat.interval.ms=1000",
        "broker.session.timeout.ms=6000",
        "replica.lag.time.max.ms=10000",
        "group.initial.rebalance.delay.ms=0",
        "num.partitions=4",
        "auto.create.topics.enable=true",
        "message.max.bytes=2097152",
        "",
    ])


# --------------------------------------------------------------------------- probes


def _admin(settings: ClusterSettings, servers: list[str]):
    from kafka import KafkaAdminClient

    from stream_app.config import KafkaConfig
    from stream_app.runtime.connections import kafka_python_kwargs

    kafka = KafkaConfig(bootstrap_servers=servers, client_id="devstack-cluster")
    return KafkaAdminClient(**kafka_python_kwargs(kafka), request_timeout_ms=3000)


def cluster_answers(settings: ClusterSettings) -> tuple[bool, str]:
    """Every node answers and the cluster's metadata lists all three brokers."""
    from kafka.errors import KafkaError

    closed = [n for n in NODE_IDS if not ds._port_open(settings.plain.host, settings.client_port(n))]
    if closed:
        return False, f"node(s) {closed} not listening"
    try:
        admin = _admin(settings, settings.bootstrap_servers)
        try:
            brokers = admin.describe_cluster().get("brokers", [])
        finally:
            admin.close()
    except (KafkaError, OSError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return len(brokers) == len(NODE_IDS), f"{len(brokers)} of {len(NODE_IDS)} brokers"


def under_replicated(settings: ClusterSettings) -> list[str]:
    """Partitions (``topic[p]``) whose in-sync replicas are fewer than their replicas: a restarted node
    has not caught up yet. Raises the client's error while the cluster cannot answer."""
    admin = _admin(settings, settings.bootstrap_servers)
    try:
        lagging = []
        topics = admin.list_topics()  # describe_topics() with no names describes none
        for topic in admin.describe_topics(topics) if topics else []:
            for partition in topic["partitions"]:
                if len(partition["isr_nodes"]) < len(partition["replica_nodes"]):
                    lagging.append(f"{topic['name']}[{partition['partition_index']}]")
        return lagging
    finally:
        admin.close()


def wait_fully_replicated(settings: ClusterSettings, timeout_s: float = 120.0) -> float:
    """Wait until every partition has all its replicas in sync (a restarted node caught up); seconds taken."""
    from kafka.errors import KafkaError

    began = time.monotonic()

    def check() -> tuple[bool, str]:
        try:
            lagging = under_replicated(settings)
        except (KafkaError, OSError, ValueError) as exc:
            return False, f"{type(exc).__name__}: {exc}"
        return not lagging, f"{len(lagging)} partition(s) under-replicated: {', '.join(lagging[:5])}"

    ds._wait_until(check, "full replication of the kafka cluster", timeout_s)
    return time.monotonic() - began


# --------------------------------------------------------------------------- processes


def _node_status(settings: ClusterSettings, node_id: int) -> ds.ServiceStatus:
    node = settings.node(node_id)
    row = ds._kafka_status(node)
    return replace(row, name=f"kafka-{node_id}")


def _cluster_id(settings: ClusterSettings) -> str:
    if not settings.cluster_id_file.exists():
        settings.root.mkdir(parents=True, exist_ok=True)
        settings.cluster_id_file.write_text(ds.kafka_cluster_id())
    return settings.cluster_id_file.read_text().strip()


def _launch_node(settings: ClusterSettings, node_id: int) -> subprocess.Popen:
    """Format node `node_id`'s storage (first start only) and start its process; does not wait."""
    node = settings.node(node_id)
    for port in (node.kafka_port, node.kafka_controller_port):
        if ds._port_open(node.host, port):
            raise DevstackError(f"port {port} is taken by a process this devstack did not start; stop it or "
                                "choose other ports with DEVSTACK_KAFKA_CLUSTER_PORT")
    node.kafka_dir.mkdir(parents=True, exist_ok=True)
    if not node.jars_dir.exists():  # one copy of the jars, shared with the plaintext stack
        node.jars_dir.symlink_to(settings.plain.jars_dir, target_is_directory=True)
    props = node.kafka_dir / "server.properties"
    props.write_text(node_properties(settings, node_id))
    (node.kafka_dir / "log4j2.properties").write_text(ds._LOG4J2)
    if not (node.kafka_dir / "data" / "meta.properties").exists():
        # static voters: no --standalone / --initial-controllers; every node gets the same cluster id
        result = subprocess.run(
            ds._kafka_java(node, ds.STORAGE_TOOL_CLASS, "format", "-t", _cluster_id(settings), "-c", str(props)),
            capture_output=True, text=True,
        )
        if result.returncode != 0:
            raise DevstackError(f"kafka storage format of node {node_id} failed:\n{result.stdout}\n{result.stderr}")
    log_file = node.kafka_dir / "kafka.log"
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            ds._kafka_java(node, ds.KAFKA_MAIN_CLASS, str(props), heap=node.kafka_heap),
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the shell that ran `up`; `down` stops it by pid
        )
    node.kafka_pidfile.write_text(str(proc.pid))
    _launched[proc.pid] = proc
    log.info("kafka node %d starting on %s (pid %d)", node_id, node.kafka_bootstrap, proc.pid)
    return proc


def _wait_for_cluster(settings: ClusterSettings, started: dict[int, subprocess.Popen]) -> None:
    def check() -> tuple[bool, str]:
        for node_id, proc in started.items():
            if proc.poll() is not None:
                log_file = settings.node(node_id).kafka_dir / "kafka.log"
                raise DevstackError(
                    f"kafka node {node_id} exited with code {proc.returncode} during start-up; see {log_file}:\n"
                    + "\n".join(log_file.read_text(errors="replace").splitlines()[-20:]))
        return cluster_answers(settings)

    first = next(iter(started), NODE_IDS[0])
    ds._wait_until(check, "the kafka cluster", settings.plain.start_timeout_s,
                   settings.node(first).kafka_dir / "kafka.log")


def start_node(settings: ClusterSettings, node_id: int, wait: bool = True) -> None:
    """Start node `node_id` if it is not running (after `kill_node`); with `wait`, until the cluster
    reports all three brokers again (it may still be catching up: see `wait_fully_replicated`)."""
    ds._ensure_kafka_jars(settings.plain)
    started = {} if _node_status(settings, node_id).running else {node_id: _launch_node(settings, node_id)}
    if wait:
        _wait_for_cluster(settings, started)


def kill_node(settings: ClusterSettings, node_id: int) -> bool:
    """SIGKILL node `node_id`, as a crash would, and wait for it to be gone; False if it was not running."""
    node = settings.node(node_id)
    pid = ds._read_pid(node.kafka_pidfile)
    if not ds._is_ours(pid, ds.KAFKA_MAIN_CLASS):
        return False
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    proc = _launched.pop(pid, None)
    if proc is not None:
        proc.wait(timeout=30)
    # gone means its ports are closed too: a dying process loses its command line before its sockets
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        ds._is_ours(pid, ds.KAFKA_MAIN_CLASS)
        or any(ds._port_open(node.host, port) for port in (node.kafka_port, node.kafka_controller_port))
    ):
        time.sleep(0.05)
    log.info("kafka node %d killed (pid %d)", node_id, pid)
    return True


# --------------------------------------------------------------------------- public API


def up(settings: ClusterSettings) -> list[ds.ServiceStatus]:
    """Start the three nodes (those not running) together, then wait until the cluster has three brokers."""
    settings.root.mkdir(parents=True, exist_ok=True)
    settings.client_env_file.write_text("".join(f"{k}={v}\n" for k, v in client_env(settings).items()))
    ds._ensure_kafka_jars(settings.plain)
    started = {n: _launch_node(settings, n) for n in NODE_IDS if not _node_status(settings, n).running}
    _wait_for_cluster(settings, started)
    log.info("kafka cluster up on %s", ",".join(settings.bootstrap_servers))
    return status(settings)


def down(settings: ClusterSettings) -> list[ds.ServiceStatus]:
    # SIGTERM to all three first: the last node stopped alone cannot finish its controlled shutdown without
    # a quorum, and would be killed after the grace period (measured: 30 s, then SIGKILL)
    for node_id in NODE_IDS:
        pid = ds._read_pid(settings.node(node_id).kafka_pidfile)
        if ds._is_ours(pid, ds.KAFKA_MAIN_CLASS):
            assert pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    for node_id in NODE_IDS:
        node = settings.node(node_id)
        pid = ds._read_pid(node.kafka_pidfile)
        if ds._is_ours(pid, ds.KAFKA_MAIN_CLASS):
            assert pid is not None
            ds._stop_pid(pid, f"kafka node {node_id}")
            proc = _launched.pop(pid, None)
            if proc is not None:
                proc.wait(timeout=30)
        elif pid is not None:
            log.info("kafka node %d: pid file names %d, which is not our process any more; leaving it", node_id, pid)
        node.kafka_pidfile.unlink(missing_ok=True)
    return status(settings)


def status(settings: ClusterSettings) -> list[ds.ServiceStatus]:
    """One row per node (each asked on its own port), then the cluster's broker count."""
    rows = [_node_status(settings, n) for n in NODE_IDS]
    healthy, detail = cluster_answers(settings) if any(r.running for r in rows) else (False, "")
    rows.append(ds.ServiceStatus("cluster", None, any(r.running for r in rows), healthy,
                                 f"{','.join(settings.bootstrap_servers)} {detail}".strip()))
    return rows
