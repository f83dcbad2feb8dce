"""Run one worker process: check config and model, create topics, serve metrics, run the faust app."""

from __future__ import annotations

import logging
from pathlib import Path

from stream_app.config import StreamConfig

log = logging.getLogger(__name__)


def ensure_topics(cfg: StreamConfig, names: list[str] | None = None) -> None:
    """Create topics (default: input, output, dead letters) with the configured partitions if absent."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import TopicAlreadyExistsError

    from stream_app.connections import kafka_python_kwargs

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


def run_worker(cfg: StreamConfig, *, loglevel: str = "info", datadir: Path | None = None) -> None:
    """Blocks until SIGTERM/SIGINT; exits the process (faust's worker owns the event loop)."""
    import faust
    import torch

    from stream_app.agents import build_parts, create_app
    from stream_app.metrics import Metrics
    from stream_app.scoring import Scorer

    if cfg.model.torch_threads:
        torch.set_num_threads(cfg.model.torch_threads)
    scorer = Scorer.from_checkpoint(cfg.model.checkpoint, cfg.model.device, cfg.model.precision)
    ensure_topics(cfg)
    metrics = Metrics()
    port = metrics.serve(cfg.metrics.port, cfg.metrics.host)
    log.info("metrics on http://%s:%d/metrics", cfg.metrics.host, port)
    app = create_app(build_parts(cfg, scorer, metrics), datadir=datadir)
    worker = faust.Worker(app, loglevel=loglevel, redirect_stdouts=False)
    worker.execute_from_commandline()
