"""Telling a server that refuses our settings from a server that is down.

A Redis or Kafka server that does not answer is an *outage*: waited out with retries
(`outages.Dependency`). One that answers but refuses this process's settings is a *configuration
error*: no retry can fix it, and a retry loop would only hide it. These are:

- wrong credentials (SASL authentication failed, Redis ``WRONGPASS``/``NOAUTH``),
- a certificate that the configured CA did not sign (or no CA configured for a private one),
- a plaintext client on a TLS port, or a TLS client on a plaintext port,
- a Redis Cluster client (``redis.cluster: true``) on a server that is not a cluster node, or a plain
  client on a cluster node (its PING passes, but every key outside the node's slots answers ``MOVED``).

`explain_kafka_error` / `explain_redis_error` turn such a failure into one `ConnectionSettingsError`
naming the setting to fix. Messages carry the server address and the library's reason, never a
password or the Redis URL (which may hold one).
"""

from __future__ import annotations

import socket
import ssl
import struct
from urllib.parse import urlsplit

from stream_app.config import KafkaConfig, RedisConfig
from stream_app.errors import ConnectionSettingsError


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (a library's error often wraps the `ssl` one)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _find(exc: BaseException, kind: type[BaseException]) -> BaseException | None:
    return next((e for e in _chain(exc) if isinstance(e, kind)), None)


def _auth_error_types() -> tuple[type[BaseException], ...]:
    from aiokafka.errors import SaslAuthenticationFailed, UnsupportedSaslMechanismError
    from kafka.errors import SaslAuthenticationFailedError
    from kafka.errors import UnsupportedSaslMechanismError as SyncUnsupportedSaslMechanismError
    from redis.exceptions import AuthenticationError, AuthenticationWrongNumberOfArgsError

    return (SaslAuthenticationFailed, UnsupportedSaslMechanismError, SaslAuthenticationFailedError,
            SyncUnsupportedSaslMechanismError, AuthenticationError, AuthenticationWrongNumberOfArgsError)


def _cluster_mismatch(exc: BaseException) -> str | None:
    """"plain" when a plain client met a cluster node (MOVED), "cluster" when a cluster client met a server
    that is not a cluster node, else None. The cluster client follows MOVED itself, so only a plain
    client sees one."""
    from redis.exceptions import MovedError, RedisClusterException

    for e in _chain(exc):
        if isinstance(e, MovedError):
            return "plain"
        if isinstance(e, RedisClusterException) and "cluster mode is not enabled" in str(e).lower():
            return "cluster"
    return None


def is_misconfiguration(exc: BaseException) -> bool:
    """True for failures that retrying cannot fix: refused credentials, an untrusted certificate, a TLS
    handshake with a server that does not speak TLS, a cluster client on a plain server or the other way
    round. `outages.is_outage` says no to these."""
    if isinstance(exc, ConnectionSettingsError):
        return True
    return _cluster_mismatch(exc) is not None or any(
        isinstance(e, (*_auth_error_types(), ssl.SSLError)) for e in _chain(exc))


def speaks_tls(host: str, port: int, timeout_s: float = 3.0) -> bool:
    """Whether the server at host:port completes a TLS handshake (its certificate is not checked: this
    only asks which protocol the port speaks, to explain why a plaintext client was cut off)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=host):
            return True
    except (OSError, ValueError):
        return False


def _ask_plaintext(host: str, port: int, request: bytes, timeout_s: float) -> bytes:
    """Send `request` in the clear and return the first bytes of the answer (b"" if none)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(request)
            return sock.recv(64)
    except OSError:
        return b""


def speaks_plaintext_kafka(host: str, port: int, timeout_s: float = 3.0) -> bool:
    """Whether host:port answers a Kafka ApiVersions request sent in the clear (a PLAINTEXT or
    SASL_PLAINTEXT listener: brokers answer it before authentication)."""
    client_id = b"casting-defect-check"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id  # ApiVersions v0, correlation id 7
    reply = _ask_plaintext(host, port, struct.pack(">i", len(body)) + body, timeout_s)
    return len(reply) >= 8 and struct.unpack(">i", reply[4:8])[0] == 7


def speaks_plaintext_redis(host: str, port: int, timeout_s: float = 3.0) -> bool:
    """Whether host:port answers an inline PING in the clear (``+PONG`` or an error such as ``-NOAUTH``)."""
    return _ask_plaintext(host, port, b"PING\r\n", timeout_s)[:1] in (b"+", b"-")


def _cut_off(exc: BaseException) -> bool:
    """The server accepted the connection, then closed it or never answered the handshake."""
    from aiokafka.errors import KafkaConnectionError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return any(isinstance(e, (KafkaConnectionError, ConnectionResetError, EOFError, TimeoutError, RedisTimeoutError))
               or (isinstance(e, RedisConnectionError) and "closed" in str(e).lower()) for e in _chain(exc))


def _reason(exc: BaseException) -> str:
    verify = _find(exc, ssl.SSLCertVerificationError)
    if verify is not None:
        return getattr(verify, "verify_message", None) or str(verify)
    return str(exc).strip() or type(exc).__name__


def explain_kafka_error(exc: BaseException, cfg: KafkaConfig, server: str) -> ConnectionSettingsError | None:
    """A `ConnectionSettingsError` if `exc` (connecting to `server`) means the settings are wrong, else None
    (an outage). May open one extra connection to ask whether the port speaks TLS."""
    from aiokafka.errors import UnsupportedSaslMechanismError

    where = f"the Kafka broker at {server}"
    if _find(exc, UnsupportedSaslMechanismError) is not None:
        return ConnectionSettingsError(
            f"kafka.sasl_mechanism: {where} does not accept {cfg.sasl_mechanism} ({_reason(exc)})",
            ["kafka.sasl_mechanism"])
    if any(isinstance(e, _auth_error_types()) for e in _chain(exc)):
        return ConnectionSettingsError(
            f"kafka.sasl_password: {where} refused the credentials of user '{cfg.sasl_username}' "
            f"({cfg.sasl_mechanism}: {_reason(exc)}); check kafka.sasl_username and the password in "
            "STREAM_APP__KAFKA__SASL_PASSWORD", ["kafka.sasl_password", "kafka.sasl_username"])
    if _find(exc, ssl.SSLCertVerificationError) is not None:
        return ConnectionSettingsError(
            f"kafka.ssl_cafile: the certificate of {where} is not trusted ({_reason(exc)}); set kafka.ssl_cafile "
            f"to the CA that signed it (now: {cfg.ssl_cafile or 'the system CAs'})", ["kafka.ssl_cafile"])
    if _find(exc, ssl.SSLError) is not None:
        return ConnectionSettingsError(
            f"kafka.security_protocol: {where} does not speak TLS ({_reason(exc)}) but kafka.security_protocol "
            f"is {cfg.security_protocol}; use PLAINTEXT or SASL_PLAINTEXT for this listener, or the broker's "
            "TLS listener", ["kafka.security_protocol"])
    host, _, port = server.rpartition(":")
    if not (_cut_off(exc) and port.isdigit()):
        return None
    if cfg.security_protocol in ("SSL", "SASL_SSL"):
        if speaks_plaintext_kafka(host, int(port)):
            return ConnectionSettingsError(
                f"kafka.security_protocol: {where} does not speak TLS but kafka.security_protocol is "
                f"{cfg.security_protocol}; use PLAINTEXT or SASL_PLAINTEXT for this listener, or the broker's "
                "TLS listener", ["kafka.security_protocol"])
    elif speaks_tls(host, int(port)):
        return ConnectionSettingsError(
            f"kafka.security_protocol: {where} speaks TLS but kafka.security_protocol is "
            f"{cfg.security_protocol}; use SASL_SSL or SSL (with kafka.ssl_cafile)", ["kafka.security_protocol"])
    return None


def redis_address(cfg: RedisConfig) -> tuple[str, int] | None:
    """Host and port of the Redis URL (None for a unix socket)."""
    parts = urlsplit(cfg.url)
    if parts.scheme == "unix":
        return None
    return parts.hostname or "localhost", parts.port or 6379


def cluster_node_error(where: str) -> ConnectionSettingsError:
    return ConnectionSettingsError(
        f"redis.cluster: {where} is a Redis Cluster node but redis.cluster is false (its keys live on several "
        "masters, and a plain client gets MOVED for every key outside this node's slots); set redis.cluster: "
        "true (STREAM_APP__REDIS__CLUSTER=true)", ["redis.cluster"])


def plain_client_on_cluster(client, cfg: RedisConfig) -> None:
    """Raise `cluster_node_error` if the server a plain client reaches runs in cluster mode. A server whose
    ACL refuses INFO is left alone (its keys would show the mismatch soon enough, as MOVED)."""
    from redis.exceptions import ResponseError

    try:
        enabled = client.info("cluster").get("cluster_enabled")
    except ResponseError:
        return
    if enabled in (1, "1"):
        address = redis_address(cfg)
        raise cluster_node_error(f"Redis at {address[0]}:{address[1]}" if address else "Redis")


def explain_redis_error(exc: BaseException, cfg: RedisConfig) -> ConnectionSettingsError | None:
    """A `ConnectionSettingsError` if `exc` means the Redis settings are wrong, else None (an outage)."""
    from redis.exceptions import AuthenticationError, AuthenticationWrongNumberOfArgsError

    address = redis_address(cfg)
    where = f"Redis at {address[0]}:{address[1]}" if address else "Redis"
    if isinstance(exc, ConnectionSettingsError):
        return exc
    mismatch = _cluster_mismatch(exc)
    if mismatch == "plain":
        return cluster_node_error(where)
    if mismatch == "cluster":
        return ConnectionSettingsError(
            f"redis.cluster: {where} is not a Redis Cluster node (cluster mode is not enabled on it) but "
            "redis.cluster is true; set redis.cluster: false for a single server, or point redis.url at a node "
            "of the cluster", ["redis.cluster"])
    user = urlsplit(cfg.url).username or "default"
    if _find(exc, AuthenticationError) is not None or _find(exc, AuthenticationWrongNumberOfArgsError) is not None:
        no_password = cfg.password is None and not urlsplit(cfg.url).password
        given = "without a password" if no_password else "with the password given"
        return ConnectionSettingsError(
            f"redis.password: {where} refused user '{user}' {given} ({_reason(exc).rstrip('.')}); check the "
            "user in redis.url and the password in STREAM_APP__REDIS__PASSWORD", ["redis.password"])
    if _find(exc, ssl.SSLCertVerificationError) is not None:
        return ConnectionSettingsError(
            f"redis.ssl_cafile: the certificate of {where} is not trusted ({_reason(exc)}); set redis.ssl_cafile "
            f"to the CA that signed it (now: {cfg.ssl_cafile or 'the system CAs'})", ["redis.ssl_cafile"])
    if _find(exc, ssl.SSLError) is not None:
        return ConnectionSettingsError(
            f"redis.url: {where} does not speak TLS ({_reason(exc)}) but redis.url starts with rediss://; "
            "use redis:// for it, or the server's tls-port", ["redis.url"])
    if not (address and _cut_off(exc)):
        return None
    if cfg.url.startswith("redis://") and speaks_tls(*address):
        return ConnectionSettingsError(
            f"redis.url: {where} speaks TLS but redis.url starts with redis://; use rediss:// "
            "(with redis.ssl_cafile)", ["redis.url"])
    if cfg.url.startswith("rediss://") and speaks_plaintext_redis(*address):
        return ConnectionSettingsError(
            f"redis.url: {where} does not speak TLS but redis.url starts with rediss://; use redis:// for it, "
            "or the server's tls-port", ["redis.url"])
    return None
