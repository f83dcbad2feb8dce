"""Local Kafka (KRaft, single node) and Redis for development and tests, without Docker.

Kafka runs from the official jars, fetched from Maven Central by the pom shipped in the package
(``stream_app/tools/resources/kafka-pom.xml``); Redis is Debian's ``redis-server`` with AOF persistence.
Data, logs and pid files live under one folder: ``$DEVSTACK_DIR``, else ``.devstack/`` in the current
working directory (not beside the installed package, so every install finds the same stack).
``up`` is idempotent and waits until each service really answers;
``down`` stops only the processes whose pid files it wrote; ``status`` asks each service.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from stream_app.errors import DevstackError

log = logging.getLogger(__name__)

KAFKA_POM = Path(__file__).resolve().parent / "resources" / "kafka-pom.xml"
KAFKA_MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL_CLASS = "kafka.tools.StorageTool"
#: the alerting rules in the repository (configs/), which `up --prometheus` loads
PROMETHEUS_RULES = Path(__file__).resolve().parents[2] / "configs" / "prometheus-alerts.yml"


@dataclass(frozen=True)
class DevstackSettings:
    """Where the stack lives and which ports it takes (env: DEVSTACK_DIR, DEVSTACK_KAFKA_PORT, ...)."""

    root: Path
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    redis_port: int = 6379
    host: str = "127.0.0.1"
    pom: Path = KAFKA_POM
    kafka_heap: str = "768m"
    start_timeout_s: float = 90.0
    # Prometheus (`up --prometheus`): its port, what it scrapes, the rules it evaluates, how often
    prometheus_port: int = 9090
    worker_target: str = "127.0.0.1:9464"
    dashboard_target: str = "127.0.0.1:8050"
    prometheus_rules: Path = field(default_factory=lambda: PROMETHEUS_RULES)
    prometheus_interval_s: float = 5.0

    @classmethod
    def from_env(cls, root: Path | None = None) -> DevstackSettings:
        env = os.environ
        return cls(
            root=Path(root or env.get("DEVSTACK_DIR") or Path.cwd() / ".devstack").resolve(),
            kafka_port=int(env.get("DEVSTACK_KAFKA_PORT", 9092)),
            kafka_controller_port=int(env.get("DEVSTACK_KAFKA_CONTROLLER_PORT", 9093)),
            redis_port=int(env.get("DEVSTACK_REDIS_PORT", 6379)),
            prometheus_port=int(env.get("DEVSTACK_PROMETHEUS_PORT", 9090)),
            worker_target=env.get("DEVSTACK_SCRAPE_WORKER", "127.0.0.1:9464"),
            dashboard_target=env.get("DEVSTACK_SCRAPE_DASHBOARD", "127.0.0.1:8050"),
        )

    @property
    def jars_dir(self) -> Path:
        return self.root / "kafka-jars"

    @property
    def kafka_dir(self) -> Path:
        return self.root / "kafka"

    @property
    def redis_dir(self) -> Path:
        return self.root / "redis"

    @property
    def kafka_pidfile(self) -> Path:
        return self.kafka_dir / "kafka.pid"

    @property
    def redis_pidfile(self) -> Path:
        return self.redis_dir / "redis.pid"

    @property
    def prometheus_dir(self) -> Path:
        return self.root / "prometheus"

    @property
    def prometheus_pidfile(self) -> Path:
        return self.prometheus_dir / "prometheus.pid"

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.host}:{self.prometheus_port}"

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.host}:{self.kafka_port}"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    pid: int | None
    running: bool
    healthy: bool
    detail: str

    def line(self) -> str:
        state = "healthy" if self.healthy else ("running, not answering" if self.running else "stopped")
        pid = f"pid {self.pid}" if self.pid else "no pid"
        return f"{self.name:<6} {state:<24} {pid:<12} {self.detail}"


#: asks a service whether it answers: (healthy, detail)
Probe = Callable[["DevstackSettings"], tuple[bool, str]]

# --------------------------------------------------------------------------- process helpers


def _read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _is_ours(pid: int | None, marker: str) -> bool:
    """A pid from our pid file is ours only if that process still runs our command (pids get reused)."""
    if not pid:
        return False
    cmd = _cmdline(pid)
    if not cmd:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.split(")")[-1].split()[0] == "Z":  # zombie: exited, not yet reaped
            return False
    except OSError:
        return False
    return marker in cmd


def _port_open(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _stop_pid(pid: int, name: str, timeout_s: float = 30.0) -> None:
    log.info("stopping %s (pid %d)", name, pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists() or _cmdline(pid) == "":
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap if it is our child
        time.sleep(0.2)
    log.warning("%s (pid %d) ignored SIGTERM for %.0fs; killing", name, pid, timeout_s)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _wait_until(check, what: str, timeout_s: float, log_file: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    last_error = ""
    while time.monotonic() < deadline:
        ok, last_error = check()
        if ok:
            return
        time.sleep(0.5)
    tail = ""
    if log_file and log_file.exists():
        tail = "\n--- last lines of " + str(log_file) + " ---\n" + "\n".join(
            log_file.read_text(errors="replace").splitlines()[-20:]
        )
    raise DevstackError(f"{what} did not answer within {timeout_s:.0f}s: {last_error}{tail}")


# --------------------------------------------------------------------------- Redis


def _redis_ping(settings: DevstackSettings) -> tuple[bool, str]:
    import redis

    from stream_app.config import RedisConfig
    from stream_app.runtime.connections import create_redis_sync

    try:  # the clients' own settings (connections.py), for a plaintext Redis
        client = create_redis_sync(RedisConfig(url=f"redis://{settings.host}:{settings.redis_port}/0",
                                               socket_timeout_s=1))
        ok = bool(client.ping())
        client.close()
        return ok, "PONG" if ok else "no PONG"
    except redis.RedisError as exc:
        return False, str(exc)


def _redis_status(settings: DevstackSettings) -> ServiceStatus:
    pid = _read_pid(settings.redis_pidfile)
    running = _is_ours(pid, "redis-server")
    healthy, detail = _redis_ping(settings) if running else (False, "")
    where = f"{settings.host}:{settings.redis_port}"
    return ServiceStatus("redis", pid if running else None, running, healthy, f"{where} {detail}".strip())


def _start_redis(settings: DevstackSettings) -> None:
    if _redis_status(settings).healthy:
        log.info("redis already running on %s:%d", settings.host, settings.redis_port)
        return
    server = shutil.which("redis-server")
    if server is None:
        raise DevstackError("redis-server not found: install it with `apt-get install redis-server`")
    if _port_open(settings.host, settings.redis_port):
        raise DevstackError(
            f"port {settings.redis_port} is taken by a process this devstack did not start; stop it "
            f"(e.g. `service redis-server stop`) or choose another port with DEVSTACK_REDIS_PORT"
        )
    settings.redis_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            server,
            "--bind", settings.host,
            "--port", str(settings.redis_port),
            "--dir", str(settings.redis_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--daemonize", "yes",
            "--pidfile", str(settings.redis_pidfile),
            "--logfile", str(settings.redis_dir / "redis.log"),
            "--save", "",
        ],
        check=True,
    )
    _wait_until(lambda: _redis_ping(settings), "redis", 20, settings.redis_dir / "redis.log")
    log.info("redis up on %s:%d", settings.host, settings.redis_port)


# --------------------------------------------------------------------------- Kafka


def _ensure_kafka_jars(settings: DevstackSettings) -> None:
    if settings.jars_dir.exists() and any(settings.jars_dir.glob("kafka_2.13-*.jar")):
        return
    mvn = shutil.which("mvn")
    if mvn is None:
        raise DevstackError("mvn not found: Maven is needed to fetch the Kafka jars (apt-get install maven)")
    if not settings.pom.exists():
        raise DevstackError(f"Kafka pom not found at {settings.pom}")
    log.info("fetching Kafka jars with Maven into %s", settings.jars_dir)
    result = subprocess.run(
        [
            mvn, "-q", "-B", "-f", str(settings.pom), "dependency:copy-dependencies",
            "-DincludeScope=runtime", f"-DoutputDirectory={settings.jars_dir}",
        ],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        shutil.rmtree(settings.jars_dir, ignore_errors=True)
        raise DevstackError(f"mvn could not fetch the Kafka jars:\n{result.stdout}\n{result.stderr}")


def _kafka_properties(settings: DevstackSettings) -> str:
    data_dir = settings.kafka_dir / "data"
    return "\n".join(
        [
            "process.roles=broker,controller",
            "node.id=1",
            f"controller.quorum.bootstrap.servers={settings.host}:{settings.kafka_controller_port}",
            f"listeners=PLAINTEXT://{settings.host}:{settings.kafka_port},"
            f"CONTROLLER://{settings.host}:{settings.kafka_controller_port}",
            f"advertised.listeners=PLAINTEXT://{settings.host}:{settings.kafka_port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=PLAINTEXT",
            f"log.dirs={data_dir}",
            # single node: every internal topic has one replica
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=10",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "num.partitions=4",
            "auto.create.topics.enable=true",
            "message.max.bytes=2097152",
            "",
        ]
    )


def kafka_cluster_id() -> str:
    """A new cluster id as `StorageTool random-uuid` makes it: a url-safe base64 uuid that does not
    start with "-" (the format command's argument parser would take such an id for an option)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def _kafka_java(settings: DevstackSettings, main_class: str, *args: str, heap: str = "256m") -> list[str]:
    java = shutil.which("java")
    if java is None:
        raise DevstackError("java not found: Kafka needs a JDK 17+ (apt-get install openjdk-17-jre-headless)")
    log4j = settings.kafka_dir / "log4j2.properties"
    return [
        java, f"-Xmx{heap}", f"-Xms{heap}" if main_class == KAFKA_MAIN_CLASS else "-Xms64m",
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={settings.kafka_dir}",
        "-cp", f"{settings.jars_dir}/*",
        main_class, *args,
    ]


_LOG4J2 = """status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def _kafka_answers(settings: DevstackSettings) -> tuple[bool, str]:
    """A metadata round trip, not just an open port: the broker must have joined its own quorum."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from stream_app.config import KafkaConfig
    from stream_app.runtime.connections import kafka_python_kwargs

    if not _port_open(settings.host, settings.kafka_port):
        return False, "port closed"
    try:  # the clients' own settings (connections.py), for a PLAINTEXT listener
        kafka = KafkaConfig(bootstrap_servers=[settings.kafka_bootstrap], client_id="devstack")
        admin = KafkaAdminClient(**kafka_python_kwargs(kafka), request_timeout_ms=3000)
        try:
            brokers = admin.describe_cluster().get("brokers", [])
        finally:
            admin.close()
        return (len(brokers) > 0, f"{len(brokers)} broker(s)")
    except (KafkaError, OSError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"


def _kafka_status(settings: DevstackSettings, answers: Probe | None = None) -> ServiceStatus:
    pid = _read_pid(settings.kafka_pidfile)
    running = _is_ours(pid, KAFKA_MAIN_CLASS)
    healthy, detail = (answers or _kafka_answers)(settings) if running else (False, "")
    return ServiceStatus(
        "kafka", pid if running else None, running, healthy, f"{settings.kafka_bootstrap} {detail}".strip()
    )


def _start_kafka(settings: DevstackSettings, properties: str | None = None, format_args: Sequence[str] = (),
                 answers: Probe | None = None) -> None:
    """Start the broker; the secured stack (`devstack_secure`) passes its own `properties`, extra
    `format_args` for the storage tool (its SCRAM users) and the probe that `answers` through TLS."""
    answers = answers or _kafka_answers
    status = _kafka_status(settings, answers)
    if status.healthy:
        log.info("kafka already running on %s", settings.kafka_bootstrap)
        return
    if status.running:  # started earlier, still coming up
        _wait_until(lambda: answers(settings), "kafka", settings.start_timeout_s)
        return
    for port in (settings.kafka_port, settings.kafka_controller_port):
        if _port_open(settings.host, port):
            raise DevstackError(
                f"port {port} is taken by a process this devstack did not start; stop it or choose "
                "other ports with DEVSTACK_KAFKA_PORT / DEVSTACK_KAFKA_CONTROLLER_PORT"
            )
    _ensure_kafka_jars(settings)
    settings.kafka_dir.mkdir(parents=True, exist_ok=True)
    props = settings.kafka_dir / "server.properties"
    props.write_text(properties if properties is not None else _kafka_properties(settings))
    (settings.kafka_dir / "log4j2.properties").write_text(_LOG4J2)
    if not (settings.kafka_dir / "data" / "meta.properties").exists():
        cluster_id = kafka_cluster_id()
        result = subprocess.run(
            _kafka_java(settings, STORAGE_TOOL_CLASS, "format", "--standalone", "-t", cluster_id,
                        "-c", str(props), *format_args),
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise DevstackError(f"kafka storage format failed:\n{result.stdout}\n{result.stderr}")
    log_file = settings.kafka_dir / "kafka.log"
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            _kafka_java(settings, KAFKA_MAIN_CLASS, str(props), heap=settings.kafka_heap),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the shell that ran `up`; `down` stops it by pid
        )
    settings.kafka_pidfile.write_text(str(proc.pid))

    def check() -> tuple[bool, str]:
        if proc.poll() is not None:
            raise DevstackError(
                f"kafka exited with code {proc.returncode} during start-up; see {log_file}:\n"
                + "\n".join(log_file.read_text(errors="replace").splitlines()[-20:])
            )
        return answers(settings)

    _wait_until(check, "kafka", settings.start_timeout_s, log_file)
    log.info("kafka up on %s (pid %d)", settings.kafka_bootstrap, proc.pid)


# --------------------------------------------------------------------------- public API


def kill(settings: DevstackSettings, name: str) -> bool:
    """SIGKILL one service of the stack (``kafka`` or ``redis``), as a crash would; for fault drills
    (`bench/chaos.py`). Returns False if it was not running. `up` starts it again."""
    pidfile, marker = {
        "kafka": (settings.kafka_pidfile, KAFKA_MAIN_CLASS),
        "redis": (settings.redis_pidfile, "redis-server"),
    }[name]
    pid = _read_pid(pidfile)
    if not _is_ours(pid, marker):
        return False
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and _cmdline(pid) != "" and time.monotonic() < deadline:
        time.sleep(0.05)
    return True


def up(settings: DevstackSettings, prometheus: bool = False) -> list[ServiceStatus]:
    settings.root.mkdir(parents=True, exist_ok=True)
    _start_redis(settings)
    _start_kafka(settings)
    if prometheus:
        start_prometheus(settings)
    return status(settings)


def down(settings: DevstackSettings) -> list[ServiceStatus]:
    stop_prometheus(settings)
    for pidfile, marker, name in (
        (settings.kafka_pidfile, KAFKA_MAIN_CLASS, "kafka"),
        (settings.redis_pidfile, "redis-server", "redis"),
    ):
        pid = _read_pid(pidfile)
        if _is_ours(pid, marker):
            assert pid is not None
            _stop_pid(pid, name)
        elif pid is not None:
            log.info("%s: pid file names %d, which is not our process any more; leaving it", name, pid)
        pidfile.unlink(missing_ok=True)
    return status(settings)


def status(settings: DevstackSettings) -> list[ServiceStatus]:
    """Kafka and Redis; Prometheus too while its pid file exists (it is optional: `up --prometheus`)."""
    rows = [_kafka_status(settings), _redis_status(settings)]
    if settings.prometheus_pidfile.exists():
        rows.append(_prometheus_status(settings))
    return rows


# --------------------------------------------------------------------------- Prometheus (optional)


def prometheus_config(settings: DevstackSettings) -> str:
    """prometheus.yml: the worker's and the dashboard's /metrics, and the repository's alerting rules."""
    interval = f"{settings.prometheus_interval_s:g}s"
    return "\n".join([
        "global:",
        f"  scrape_interval: {interval}",
        f"  evaluation_interval: {interval}",
        "rule_files:",
        f"  - {settings.prometheus_rules}",
        "scrape_configs:",
        "  - job_name: casting-worker",
        "    static_configs:",
        f"      - targets: [\"{settings.worker_target}\"]",
        "  - job_name: casting-dashboard",
        "    static_configs:",
        f"      - targets: [\"{settings.dashboard_target}\"]",
        "",
    ])


def _prometheus_ready(settings: DevstackSettings) -> tuple[bool, str]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"{settings.prometheus_url}/-/ready", timeout=2) as reply:
            return reply.status == 200, "ready"
    except urllib.error.HTTPError as exc:
        exc.close()
        return False, f"HTTP {exc.code}"
    except OSError as exc:
        return False, str(exc)


def _prometheus_status(settings: DevstackSettings) -> ServiceStatus:
    pid = _read_pid(settings.prometheus_pidfile)
    running = _is_ours(pid, "prometheus")
    healthy, detail = _prometheus_ready(settings) if running else (False, "")
    return ServiceStatus("prom", pid if running else None, running, healthy,
                         f"{settings.prometheus_url} {detail}".strip())


def start_prometheus(settings: DevstackSettings) -> None:
    """Debian's `prometheus`, scraping `worker_target` and `dashboard_target`, with the alerting rules."""
    if _prometheus_status(settings).healthy:
        log.info("prometheus already running on %s", settings.prometheus_url)
        return
    binary = shutil.which("prometheus")
    if binary is None:
        raise DevstackError("prometheus not found: install it with `apt-get install prometheus` "
                            "(scripts/install-system-deps.sh does)")
    if not settings.prometheus_rules.exists():
        raise DevstackError(f"alerting rules not found at {settings.prometheus_rules}")
    if _port_open(settings.host, settings.prometheus_port):
        raise DevstackError(f"port {settings.prometheus_port} is taken by a process this devstack did not start; "
                            "choose another with DEVSTACK_PROMETHEUS_PORT")
    settings.prometheus_dir.mkdir(parents=True, exist_ok=True)
    config = settings.prometheus_dir / "prometheus.yml"
    config.write_text(prometheus_config(settings))
    log_file = settings.prometheus_dir / "prometheus.log"
    with log_file.open("ab") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={settings.prometheus_dir / 'data'}",
             f"--web.listen-address={settings.host}:{settings.prometheus_port}", "--storage.tsdb.retention.time=7d"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    settings.prometheus_pidfile.write_text(str(proc.pid))

    def check() -> tuple[bool, str]:
        if proc.poll() is not None:
            raise DevstackError(f"prometheus exited with code {proc.returncode}; see {log_file}:\n"
                                + "\n".join(log_file.read_text(errors="replace").splitlines()[-20:]))
        return _prometheus_ready(settings)

    _wait_until(check, "prometheus", settings.start_timeout_s, log_file)
    log.info("prometheus up on %s (pid %d), scraping %s and %s", settings.prometheus_url, proc.pid,
             settings.worker_target, settings.dashboard_target)


def stop_prometheus(settings: DevstackSettings) -> None:
    pid = _read_pid(settings.prometheus_pidfile)
    if _is_ours(pid, "prometheus"):
        assert pid is not None
        _stop_pid(pid, "prometheus")
    settings.prometheus_pidfile.unlink(missing_ok=True)
