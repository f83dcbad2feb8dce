"""Topic administration: create the topics a worker or a replay writes to, if absent."""

from __future__ import annotations

import logging

from stream_app.config import StreamConfig

log = logging.getLogger(__name__)


def ensure_topics(cfg: StreamConfig, names: list[str] | None = None) -> None:
    """Create topics (default: input, output, dead letters) with the configured partitions if absent."""
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
