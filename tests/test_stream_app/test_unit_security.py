"""Security without services: which connection failures are settings errors (never retried as outages),
their messages (naming the setting, never a secret), the TLS client settings, the secured stack's files."""

from __future__ import annotations

import ssl
import subprocess

import pytest
import redis.exceptions
from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed
from pydantic import SecretStr

from stream_app.config import KafkaConfig, RedisConfig, load_config
from stream_app.runtime.connection_errors import explain_kafka_error, explain_redis_error, is_misconfiguration
from stream_app.runtime.connections import redis_kwargs
from stream_app.runtime.outages import is_outage
from stream_app.tools.worker_process import free_port

SECRET = "s3cret-Pa55word"
KAFKA = KafkaConfig(bootstrap_servers=["127.0.0.1:9094"], security_protocol="SASL_SSL",
                    sasl_mechanism="SCRAM-SHA-512", sasl_username="casting", sasl_password=SecretStr(SECRET),
                    ssl_cafile="/etc/ca.pem")
REDIS = RedisConfig(url=f"rediss://casting:{SECRET}@127.0.0.1:6380/0", password=SecretStr(SECRET),
                    ssl_cafile="/etc/ca.pem")


def wrapped(outer: Exception, inner: BaseException) -> Exception:
    """`outer` raised while handling `inner`, as the client libraries do."""
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except Exception as exc:  # noqa: BLE001
        return exc


def untrusted() -> ssl.SSLCertVerificationError:
    exc = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
    exc.verify_message = "self-signed certificate in certificate chain"
    return exc


OUTAGES = [
    ConnectionRefusedError(111, "Connection refused"),
    redis.exceptions.ConnectionError("Error 111 connecting to 127.0.0.1:6380. Connection refused."),
    redis.exceptions.TimeoutError("Timeout reading from socket"),
    KafkaConnectionError("Unable to bootstrap"),
    TimeoutError(),
]
SETTINGS_ERRORS = [
    redis.exceptions.AuthenticationError("invalid username-password pair or user is disabled."),
    wrapped(redis.exceptions.ConnectionError("Error 1 connecting"), untrusted()),
    SaslAuthenticationFailed("Authentication failed during authentication due to invalid credentials"),
    untrusted(),
]


@pytest.mark.parametrize("exc", OUTAGES, ids=lambda e: type(e).__name__)
def test_an_unreachable_server_is_an_outage(exc):
    assert is_outage(exc) and not is_misconfiguration(exc)
    assert explain_redis_error(exc, REDIS.model_copy(update={"url": "rediss://127.0.0.1:1/0"})) is None


@pytest.mark.parametrize("exc", SETTINGS_ERRORS, ids=lambda e: type(e).__name__)
def test_refused_settings_are_never_retried_as_an_outage(exc):
    assert is_misconfiguration(exc) and not is_outage(exc)


@pytest.mark.parametrize(("exc", "key", "text"), [
    (SaslAuthenticationFailed("invalid credentials"), "kafka.sasl_password",
     "kafka.sasl_password: the Kafka broker at 127.0.0.1:9094 refused the credentials of user 'casting'"),
    (untrusted(), "kafka.ssl_cafile", "kafka.ssl_cafile: the certificate of the Kafka broker at 127.0.0.1:9094 is "
                                      "not trusted (self-signed certificate in certificate chain)"),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), "kafka.security_protocol",
     "kafka.security_protocol: the Kafka broker at 127.0.0.1:9094 does not speak TLS"),
])
def test_kafka_settings_errors_name_the_setting_and_hide_the_password(exc, key, text):
    error = explain_kafka_error(exc, KAFKA, "127.0.0.1:9094")
    assert error is not None and error.keys[0] == key
    assert text in str(error)
    assert SECRET not in str(error)


@pytest.mark.parametrize(("exc", "key", "text"), [
    (redis.exceptions.AuthenticationError("invalid username-password pair or user is disabled."), "redis.password",
     "redis.password: Redis at 127.0.0.1:6380 refused user 'casting' with the password given"),
    (wrapped(redis.exceptions.ConnectionError("Error 1 connecting"), untrusted()), "redis.ssl_cafile",
     "redis.ssl_cafile: the certificate of Redis at 127.0.0.1:6380 is not trusted"),
    (wrapped(redis.exceptions.ConnectionError("Error 1 connecting"), ssl.SSLError(1, "wrong version number")),
     "redis.url", "redis.url: Redis at 127.0.0.1:6380 does not speak TLS"),
])
def test_redis_settings_errors_name_the_setting_and_hide_the_password(exc, key, text):
    error = explain_redis_error(exc, REDIS)
    assert error is not None and error.keys == [key]
    assert text in str(error)
    assert SECRET not in str(error)


def test_a_plaintext_client_cut_off_by_a_closed_port_is_an_outage_not_a_tls_port():
    port = free_port()  # nothing listens: the TLS probe cannot connect, so no settings error is claimed
    plain = KafkaConfig(bootstrap_servers=[f"127.0.0.1:{port}"])
    assert explain_kafka_error(KafkaConnectionError("closed"), plain, f"127.0.0.1:{port}") is None
    cut = wrapped(redis.exceptions.ConnectionError("Connection closed by server."), ConnectionResetError(104))
    assert explain_redis_error(cut, RedisConfig(url=f"redis://127.0.0.1:{port}/0")) is None


def test_rediss_urls_get_the_ca_and_verification_plain_ones_do_not():
    assert redis_kwargs(REDIS)["ssl_ca_certs"] == "/etc/ca.pem"
    assert redis_kwargs(REDIS)["ssl_cert_reqs"] == "required"
    plain = redis_kwargs(RedisConfig(url="redis://127.0.0.1:6379/0", ssl_cafile="/etc/ca.pem"))
    assert "ssl_ca_certs" not in plain and "ssl_cert_reqs" not in plain


def test_secured_settings_come_from_the_environment_and_never_show():
    env = {"STREAM_APP__KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "STREAM_APP__KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
           "STREAM_APP__KAFKA__SASL_USERNAME": "casting", "STREAM_APP__KAFKA__SASL_PASSWORD": SECRET,
           "STREAM_APP__KAFKA__SSL_CAFILE": "/etc/ca.pem", "STREAM_APP__REDIS__URL": "rediss://casting@h:6380/0",
           "STREAM_APP__REDIS__PASSWORD": SECRET, "STREAM_APP__REDIS__SSL_CAFILE": "/etc/ca.pem"}
    cfg = load_config(environ=env)
    assert cfg.kafka.sasl_password.get_secret_value() == SECRET
    assert str(cfg.redis.ssl_cafile) == "/etc/ca.pem"
    assert SECRET not in repr(cfg) and SECRET not in str(cfg.model_dump())


def test_certificates_verify_against_their_own_ca_only(tmp_path):
    from stream_app.tools.certs import create_ca, ensure_tls_files

    files = ensure_tls_files(tmp_path / "tls")
    again = ensure_tls_files(tmp_path / "tls")  # made once, reused
    assert again.server_cert.read_bytes() == files.server_cert.read_bytes()
    other = create_ca(tmp_path / "other", "other CA")
    verify = ["openssl", "verify", "-CAfile"]
    assert subprocess.run([*verify, str(files.ca_cert), str(files.server_cert)], capture_output=True).returncode == 0
    assert subprocess.run([*verify, str(other.ca_cert), str(files.server_cert)], capture_output=True).returncode != 0
    assert files.server_key.stat().st_mode & 0o077 == 0 and files.ca_key.stat().st_mode & 0o077 == 0
    names = subprocess.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(files.server_cert)],
                           capture_output=True, text=True).stdout
    assert "DNS:localhost" in names and "IP Address:127.0.0.1" in names


def test_secured_broker_has_no_plaintext_client_listener(tmp_path):
    from stream_app.tools import devstack_secure as secure
    from stream_app.tools.devstack import DevstackSettings

    settings = secure.SecuredSettings(plain=DevstackSettings(root=tmp_path))
    passwords = secure.Passwords("broker-pw", "kafka-pw", "redis-pw")
    props = dict(line.split("=", 1) for line in secure._kafka_properties(settings, passwords).splitlines())
    assert props["listeners"] == "SASL_SSL://127.0.0.1:9094,CONTROLLER://127.0.0.1:9095"
    assert props["advertised.listeners"] == "SASL_SSL://127.0.0.1:9094"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert "PLAINTEXT://" not in props["listeners"]
    redis_conf = secure._redis_conf(settings, passwords)
    assert "port 0\n" in redis_conf and "tls-port 6380" in redis_conf and "user default off" in redis_conf
    env = secure.client_env(settings, passwords)
    assert env["STREAM_APP__REDIS__URL"] == "rediss://casting@127.0.0.1:6380/0"
    assert env["STREAM_APP__KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"


def test_secured_stack_defaults_do_not_collide_with_the_plaintext_stack(tmp_path, monkeypatch):
    from stream_app.tools.devstack_secure import SecuredSettings

    for stack in ("", "SECURED_"):
        for port in ("KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "REDIS_PORT"):
            monkeypatch.delenv(f"DEVSTACK_{stack}{port}", raising=False)
    settings = SecuredSettings.from_env(tmp_path)
    plain = settings.plain
    assert (settings.kafka_port, settings.kafka_controller_port, settings.redis_port) == (9094, 9095, 6380)
    assert not {9094, 9095, 6380} & {plain.kafka_port, plain.kafka_controller_port, plain.redis_port}
    assert settings.root == tmp_path / "secured" and settings.stack.kafka_dir == tmp_path / "secured" / "kafka"
