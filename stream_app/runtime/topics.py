"""Topic administration: create the topics a worker or a replay writes to, if absent.

A broker that is down at start is waited for (the same backoff as every other outage, one log line),
so a worker started during a broker restart comes up when the broker does instead of exiting.
"""

from __future__ import annotations

import logging

from stream_app.config import StreamConfig
from stream_app.runtime.outages import Dependency

log = logging.getLogger(__name__)


def ensure_topics(cfg: StreamConfig, names: list[str] | None = None) -> None:
    """Create topics (default: input, output, dead letters) with the configured partitions, replication and
    `min.insync.replicas` if absent (an existing topic is left as it is);
    waits while the broker cannot be reached (the outage policy of `outages.Dependency`)."""
    Dependency.from_config("kafka", cfg.resilience).call_sync(lambda: _create_missing(cfg, names), "topic creation")


def _create_missing(cfg: StreamConfig, names: list[str] | None) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from stream_app.runtime.connections import kafka_python_kwargs

    admin = KafkaAdminClient(**kafka_python_kwargs(cfg.kafka))
    try:
        existing = set(admin.list_topics())
        wanted = names or [cfg.topics.sensors, cfg.topics.predictions, cfg.topics.deadletter]
        new = [
            NewTopic(name, cfg.topics.partitions, cfg.topics.replication_factor,
                     topic_configs=cfg.topics.topic_configs())
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
