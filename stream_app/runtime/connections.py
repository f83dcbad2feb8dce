"""Clients for Kafka and Redis built from config, so every component connects the same way.

Secrets come from config (which takes them from the environment) and are never logged.
"""

from __future__ import annotations

import ssl
from typing import Any

import redis
import redis.asyncio

from stream_app.config import KafkaConfig, RedisConfig


def redis_kwargs(cfg: RedisConfig) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"socket_timeout": cfg.socket_timeout_s, "socket_connect_timeout": 5}
    if cfg.password is not None:
        kwargs["password"] = cfg.password.get_secret_value()
    return kwargs


def create_redis(cfg: RedisConfig) -> redis.asyncio.Redis:
    """An asyncio Redis client; ``rediss://`` URLs use TLS."""
    return redis.asyncio.Redis.from_url(cfg.url, **redis_kwargs(cfg))


def create_redis_sync(cfg: RedisConfig) -> redis.Redis:
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
