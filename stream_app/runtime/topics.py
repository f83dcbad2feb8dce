"""Topic administration: create the topics a worker or a replay writes to, if absent.

A broker that is down at start is waited for (the same backoff as every other outage, one log line),
so a worker started during a broker restart comes up when the broker does instead of exiting.
"""

from __future__ import annotations

import logging

from stream_app.config import StreamConfig

log = logging.getLogger(__name__)


def ensure_topics(cfg: StreamConfig, names: list[str] | None = None) -> None:
    """Create topics (default: input, output, dead letters) with the configured partitions if absent;
    waits while the broker cannot be reached."""
    from tenacity import Retrying, retry_if_exception, wait_random_exponential

    from stream_app.runtime.outages import is_outage

    failures = 0

    def note(state) -> None:
        nonlocal failures
        failures += 1
        if failures == 1:
            exc = state.outcome.exception()
            log.warning("kafka unreachable while creating topics (%s: %s); waiting for it, retrying with backoff",
                        type(exc).__name__, str(exc)[:200])

    retrying = Retrying(retry=retry_if_exception(is_outage), before_sleep=note, reraise=True,
                        wait=wait_random_exponential(multiplier=cfg.resilience.retry_initial_s,
                                                     max=cfg.resilience.retry_max_s))
    retrying(_create_missing, cfg, names)
    if failures:
        log.info("kafka is back (%d failed attempt(s)); topics checked", failures)


def _create_missing(cfg: StreamConfig, names: list[str] | None) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from stream_app.runtime.connections import kafka_python_kwargs

    admin = KafkaAdminClient(**kafka_python_kwargs(cfg.kafka))
    try:
        existing = set(admin.list_topics())
        wanted = names or [cfg.topics.sensors, cfg.topics.predictions, cfg.topics.deadletter]
        new = [
            NewTopic(name, cfg.topics.partitions, cfg.topics.replication_factor)
            for name in wanted
            if name not in existing
        ]
        if new:
            try:
                admin.create_topics(new)
                log.info("created topics %s", ", ".join(t.name for t in new))
            except TopicAlreadyExistsError:
                pass  # another worker won the race
    finally:
        admin.close()
