"""The secured local stack: Kafka with a SASL_SSL listener (SCRAM-SHA-512) and Redis with TLS and an ACL user.

A second stack beside the plaintext one (`devstack`), with its own ports, processes and state folder,
``<devstack dir>/secured/``, which holds everything it generates and nothing of it is committed:

    tls/ca.pem, ca.key                  a private CA (clients trust ca.pem)
    tls/server.pem, server.key, server-keystore.pem   the certificate both servers present (localhost, 127.0.0.1)
    secrets.json                        the generated passwords (mode 0600)
    client.env                          the STREAM_APP__* settings a client needs, passwords included (mode 0600)
    kafka/, redis/                      data, logs, pid files, server.properties, redis.conf (mode 0600)

Kafka's SCRAM users (``admin`` for the broker itself, ``casting`` for the clients) are created when the
storage is formatted (``kafka-storage format --add-scram``). The KRaft controller listener stays
PLAINTEXT on the loopback interface: only the broker inside the same process talks to it, and KRaft
does not accept SCRAM on the controller listener. Redis listens on its TLS port only (``port 0``), its
``default`` user is disabled and ``casting`` has a password.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, replace
from pathlib import Path

from pydantic import SecretStr

from stream_app.config import ENV_PREFIX, KafkaConfig, RedisConfig
from stream_app.errors import DevstackError
from stream_app.tools import devstack as ds
from stream_app.tools.certs import TlsFiles, ensure_tls_files

log = logging.getLogger(__name__)

KAFKA_CLIENT_USER = "casting"
KAFKA_BROKER_USER = "admin"  # the broker's own login on its SASL_SSL listener (inter-broker)
REDIS_USER = "casting"
MECHANISM = "SCRAM-SHA-512"


@dataclass(frozen=True)
class SecuredSettings:
    """Ports of the secured stack (env: DEVSTACK_SECURED_KAFKA_PORT, DEVSTACK_SECURED_KAFKA_CONTROLLER_PORT,
    DEVSTACK_SECURED_REDIS_PORT) and where it lives (``secured/`` under the plaintext stack's folder)."""

    plain: ds.DevstackSettings
    kafka_port: int = 9094
    kafka_controller_port: int = 9095
    redis_port: int = 6380

    @classmethod
    def from_env(cls, root: Path | None = None) -> SecuredSettings:
        env = os.environ
        return cls(
            plain=ds.DevstackSettings.from_env(root),
            kafka_port=int(env.get("DEVSTACK_SECURED_KAFKA_PORT", 9094)),
            kafka_controller_port=int(env.get("DEVSTACK_SECURED_KAFKA_CONTROLLER_PORT", 9095)),
            redis_port=int(env.get("DEVSTACK_SECURED_REDIS_PORT", 6380)),
        )

    @property
    def stack(self) -> ds.DevstackSettings:
        """The folders, pid files and ports of the secured processes, in the plaintext stack's terms."""
        return replace(self.plain, root=self.plain.root / "secured", kafka_port=self.kafka_port,
                       kafka_controller_port=self.kafka_controller_port, redis_port=self.redis_port)

    @property
    def root(self) -> Path:
        return self.stack.root

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.root / "tls")

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.json"

    @property
    def client_env_file(self) -> Path:
        return self.root / "client.env"


@dataclass(frozen=True)
class Passwords:
    broker: str
    kafka: str
    redis: str

    def all(self) -> tuple[str, ...]:
        return (self.broker, self.kafka, self.redis)


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds a secret)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def ensure_passwords(settings: SecuredSettings) -> Passwords:
    """The stack's passwords: generated once (random), kept in ``secrets.json``."""
    if settings.secrets_file.exists():
        return Passwords(**json.loads(settings.secrets_file.read_text()))
    passwords = Passwords(*(secrets.token_urlsafe(24) for _ in range(3)))
    _write_private(settings.secrets_file, json.dumps(passwords.__dict__))
    return passwords


def read_passwords(settings: SecuredSettings) -> Passwords:
    if not settings.secrets_file.exists():
        raise DevstackError(f"no secured stack in {settings.root}: start it with `stream-app devstack up --secured`")
    return Passwords(**json.loads(settings.secrets_file.read_text()))


# --------------------------------------------------------------------------- what clients use


def client_env(settings: SecuredSettings, passwords: Passwords) -> dict[str, str]:
    """The ``STREAM_APP__*`` variables that point a client at the secured stack, passwords included."""
    host = settings.plain.host
    cafile = str(settings.tls.ca_cert)
    return {
        f"{ENV_PREFIX}KAFKA__BOOTSTRAP_SERVERS": f"{host}:{settings.kafka_port}",
        f"{ENV_PREFIX}KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        f"{ENV_PREFIX}KAFKA__SASL_MECHANISM": MECHANISM,
        f"{ENV_PREFIX}KAFKA__SASL_USERNAME": KAFKA_CLIENT_USER,
        f"{ENV_PREFIX}KAFKA__SASL_PASSWORD": passwords.kafka,
        f"{ENV_PREFIX}KAFKA__SSL_CAFILE": cafile,
        f"{ENV_PREFIX}REDIS__URL": f"rediss://{REDIS_USER}@{host}:{settings.redis_port}/0",
        f"{ENV_PREFIX}REDIS__PASSWORD": passwords.redis,
        f"{ENV_PREFIX}REDIS__SSL_CAFILE": cafile,
    }


def read_client_env(settings: SecuredSettings) -> dict[str, str]:
    """`client_env` of a stack that `up` made (fails clearly if there is none)."""
    return client_env(settings, read_passwords(settings))


def _kafka_config(settings: SecuredSettings, passwords: Passwords) -> KafkaConfig:
    return KafkaConfig(bootstrap_servers=[f"{settings.plain.host}:{settings.kafka_port}"],
                       security_protocol="SASL_SSL", sasl_mechanism=MECHANISM, sasl_username=KAFKA_CLIENT_USER,
                       sasl_password=SecretStr(passwords.kafka), ssl_cafile=settings.tls.ca_cert,
                       client_id="devstack")


def _redis_config(settings: SecuredSettings, passwords: Passwords) -> RedisConfig:
    return RedisConfig(url=f"rediss://{REDIS_USER}@{settings.plain.host}:{settings.redis_port}/0",
                       password=SecretStr(passwords.redis), ssl_cafile=settings.tls.ca_cert, socket_timeout_s=1)


# --------------------------------------------------------------------------- probes (through connections.py)


def _kafka_answers(settings: SecuredSettings, passwords: Passwords) -> tuple[bool, str]:
    """A metadata round trip over SASL_SSL, with the clients' own settings."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    from stream_app.runtime.connections import kafka_python_kwargs

    if not ds._port_open(settings.plain.host, settings.kafka_port):
        return False, "port closed"
    try:
        admin = KafkaAdminClient(**kafka_python_kwargs(_kafka_config(settings, passwords)), request_timeout_ms=3000)
        try:
            brokers = admin.describe_cluster().get("brokers", [])
        finally:
            admin.close()
        return len(brokers) > 0, f"{len(brokers)} broker(s), SASL_SSL {MECHANISM}"
    except (KafkaError, OSError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {scrub(str(exc), passwords)}"


def _redis_answers(settings: SecuredSettings, passwords: Passwords) -> tuple[bool, str]:
    import redis

    from stream_app.runtime.connections import create_redis_sync

    try:
        client = create_redis_sync(_redis_config(settings, passwords))
        try:
            ok = bool(client.ping())
        finally:
            client.close()
        return ok, f"PONG, TLS, user {REDIS_USER}" if ok else "no PONG"
    except (redis.RedisError, OSError) as exc:
        return False, f"{type(exc).__name__}: {scrub(str(exc), passwords)}"


def scrub(text: str, passwords: Passwords) -> str:
    for password in passwords.all():
        text = text.replace(password, "***")
    return text


# --------------------------------------------------------------------------- Redis with TLS


def _redis_conf(settings: SecuredSettings, passwords: Passwords) -> str:
    stack, tls = settings.stack, settings.tls
    return "\n".join([
        f"bind {stack.host}",
        "port 0",  # no plaintext port at all
        f"tls-port {settings.redis_port}",
        f"tls-cert-file {tls.server_cert}",
        f"tls-key-file {tls.server_key}",
        f"tls-ca-cert-file {tls.ca_cert}",
        "tls-auth-clients no",  # clients prove who they are with the ACL password, not a certificate
        f"dir {stack.redis_dir}",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        "daemonize yes",
        f"pidfile {stack.redis_pidfile}",
        f"logfile {stack.redis_dir / 'redis.log'}",
        "user default off",
        f"user {REDIS_USER} on >{passwords.redis} ~* &* +@all",
        "",
    ])


def _redis_status(settings: SecuredSettings, passwords: Passwords) -> ds.ServiceStatus:
    stack = settings.stack
    pid = ds._read_pid(stack.redis_pidfile)
    running = ds._is_ours(pid, "redis-server")
    healthy, detail = _redis_answers(settings, passwords) if running else (False, "")
    where = f"{stack.host}:{settings.redis_port}"
    return ds.ServiceStatus("redis", pid if running else None, running, healthy, f"{where} {detail}".strip())


def _start_redis(settings: SecuredSettings, passwords: Passwords) -> None:
    if _redis_status(settings, passwords).healthy:
        log.info("secured redis already running on port %d", settings.redis_port)
        return
    server = shutil.which("redis-server")
    if server is None:
        raise DevstackError("redis-server not found: install it with `apt-get install redis-server`")
    if ds._port_open(settings.plain.host, settings.redis_port):
        raise DevstackError(f"port {settings.redis_port} is taken by a process this devstack did not start; stop "
                            "it or choose another port with DEVSTACK_SECURED_REDIS_PORT")
    stack = settings.stack
    conf = stack.redis_dir / "redis.conf"
    _write_private(conf, _redis_conf(settings, passwords))  # holds the ACL password: never on a command line
    subprocess.run([server, str(conf)], check=True)
    ds._wait_until(lambda: _redis_answers(settings, passwords), "secured redis", 20, stack.redis_dir / "redis.log")
    log.info("secured redis up on %s:%d (TLS, ACL user %s)", stack.host, settings.redis_port, REDIS_USER)


# --------------------------------------------------------------------------- Kafka with SASL_SSL


def _jaas(user: str, password: str) -> str:
    return f'org.apache.kafka.common.security.scram.ScramLoginModule required username="{user}" password="{password}";'


def _kafka_properties(settings: SecuredSettings, passwords: Passwords) -> str:
    """The plaintext stack's broker settings with the client listener replaced by SASL_SSL."""
    stack, tls, host = settings.stack, settings.tls, settings.plain.host
    secured = {
        "listeners": f"SASL_SSL://{host}:{settings.kafka_port},CONTROLLER://{host}:{settings.kafka_controller_port}",
        "advertised.listeners": f"SASL_SSL://{host}:{settings.kafka_port}",
        "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "SASL_SSL",
        "sasl.enabled.mechanisms": MECHANISM,
        "sasl.mechanism.inter.broker.protocol": MECHANISM,
        f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": _jaas(KAFKA_BROKER_USER, passwords.broker),
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": str(tls.server_keystore),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls.ca_cert),
        "ssl.client.auth": "none",
    }
    lines = []
    for line in ds._kafka_properties(stack).splitlines():
        key = line.split("=", 1)[0]
        if key not in secured:
            lines.append(line)
    lines += [f"{key}={value}" for key, value in secured.items()]
    return "\n".join(line for line in lines if line) + "\n"


def _start_kafka(settings: SecuredSettings, passwords: Passwords) -> None:
    stack = settings.stack
    ds._ensure_kafka_jars(settings.plain)  # one copy of the jars, shared with the plaintext stack
    if not stack.jars_dir.exists():
        stack.root.mkdir(parents=True, exist_ok=True)
        stack.jars_dir.symlink_to(settings.plain.jars_dir, target_is_directory=True)
    scram = [("--add-scram", f"{MECHANISM}=[name={user},password={password}]")
             for user, password in ((KAFKA_BROKER_USER, passwords.broker), (KAFKA_CLIENT_USER, passwords.kafka))]
    properties = _kafka_properties(settings, passwords)
    stack.kafka_dir.mkdir(parents=True, exist_ok=True)
    _write_private(stack.kafka_dir / "server.properties", "")  # the broker's JAAS password goes in: owner only
    try:
        ds._start_kafka(stack, properties=properties, format_args=[arg for pair in scram for arg in pair],
                        answers=lambda _: _kafka_answers(settings, passwords))
    except DevstackError as exc:
        raise DevstackError(scrub(str(exc), passwords)) from None


# --------------------------------------------------------------------------- public API


def up(settings: SecuredSettings) -> list[ds.ServiceStatus]:
    """Start the secured Kafka and Redis (idempotent); writes ``client.env`` for the clients."""
    settings.root.mkdir(parents=True, exist_ok=True)
    ensure_tls_files(settings.tls.folder)
    passwords = ensure_passwords(settings)
    _write_private(settings.client_env_file,
                   "".join(f"{name}={value}\n" for name, value in client_env(settings, passwords).items()))
    _start_redis(settings, passwords)
    _start_kafka(settings, passwords)
    return status(settings)


def down(settings: SecuredSettings) -> list[ds.ServiceStatus]:
    ds.down(settings.stack)
    return status(settings)


def status(settings: SecuredSettings) -> list[ds.ServiceStatus]:
    if not settings.secrets_file.exists():
        return [ds.ServiceStatus(name, None, False, False, "secured stack never started")
                for name in ("kafka", "redis")]
    passwords = read_passwords(settings)
    kafka = ds._kafka_status(settings.stack, lambda _: _kafka_answers(settings, passwords))
    return [kafka, _redis_status(settings, passwords)]
