"""Run one worker process: check config and model, create topics, serve metrics, run the faust app."""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

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


def _committed_offsets(admin, group: str, timeout_s: float = 60.0) -> dict:
    """A group's committed offsets. Waits out a group coordinator that is not ready yet: a fresh broker
    creates its offsets topic on first use, and answers COORDINATOR_NOT_AVAILABLE meanwhile."""
    from kafka.errors import KafkaError

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return admin.list_group_offsets({group: None}).get(group, {})
        except KafkaError as exc:
            if not exc.retriable or time.monotonic() > deadline:
                raise
            log.info("waiting for the coordinator of group %s (%s)", group, type(exc).__name__)
            time.sleep(0.5)


def adopt_previous_ingest_offsets(cfg: StreamConfig) -> dict:
    """Workers before the ingest consumer read `casting.sensors` in faust's group `<app_id>`. Where the ingest
    group has no offset for a partition yet and that group has one, the ingest group starts there, so an
    upgrade neither re-reads the topic's history nor skips anything. Returns {TopicPartition: offset} set.

    Kafka takes these commits only while the ingest group has no active member; a worker already running
    has done this, and a refusal is logged, not raised.
    """
    from kafka.admin import KafkaAdminClient
    from kafka.errors import NoError

    from stream_app.runtime.connections import kafka_python_kwargs
    from stream_app.runtime.ingest_loop import ingest_group_id

    admin = KafkaAdminClient(**kafka_python_kwargs(cfg.kafka))
    try:
        ingest_group = ingest_group_id(cfg)
        previous = _committed_offsets(admin, cfg.app_id)
        own = _committed_offsets(admin, ingest_group)
        adopt = {
            tp: committed for tp, committed in previous.items()
            if tp.topic == cfg.topics.sensors and committed.offset >= 0
            and (tp not in own or own[tp].offset < 0)
        }
        if not adopt:
            return {}
        refused = {tp: error for tp, error in admin.alter_group_offsets(ingest_group, adopt).items()
                   if error is not NoError}
        if refused:
            log.warning("could not start group %s where group %s stopped: %s", ingest_group, cfg.app_id, refused)
        done = {tp: committed.offset for tp, committed in adopt.items() if tp not in refused}
        if done:
            log.info("group %s starts where group %s stopped: %s", ingest_group, cfg.app_id,
                     ", ".join(f"{tp.topic}[{tp.partition}]@{o}" for tp, o in sorted(done.items())))
        return done
    finally:
        admin.close()


def run_worker(cfg: StreamConfig, *, loglevel: str = "info", datadir: Path | None = None) -> None:
    """Blocks until SIGTERM/SIGINT; exits the process (faust's worker owns the event loop)."""
    import faust
    import torch

    from stream_app.runtime.faust_app import build_parts, create_app
    from stream_app.runtime.metrics import Metrics
    from stream_app.service.model_runner import Scorer

    if cfg.model.torch_threads:
        torch.set_num_threads(cfg.model.torch_threads)
    scorer = Scorer.from_checkpoint(cfg.model.checkpoint, cfg.model.device, cfg.model.precision)
    ensure_topics(cfg)
    adopt_previous_ingest_offsets(cfg)
    metrics = Metrics()
    parts = build_parts(cfg, scorer, metrics)
    port = metrics.serve(cfg.metrics.port, cfg.metrics.host, health=parts.health)
    log.info("metrics on http://%s:%d/metrics, readiness on /health", cfg.metrics.host, port)
    app = create_app(parts, datadir=datadir)
    worker = _worker_with_grace(faust.Worker)(app, loglevel=loglevel, redirect_stdouts=False)
    worker.grace_s = cfg.resilience.shutdown_grace_s
    worker.execute_from_commandline()


def _worker_with_grace(base: type) -> type:
    """faust's Worker, plus a deadline on stopping: after SIGTERM/SIGINT the process exits within
    `grace_s` even if a client is still waiting on an unreachable Redis or broker. Whatever was not
    finished by then is uncommitted and unacknowledged, so the next worker reads it again."""

    class GracefulWorker(base):  # type: ignore[misc, valid-type]
        grace_s: float = 30.0

        def _arm(self) -> None:
            def expire() -> None:
                log.warning("still stopping after %.0f s (shutdown_grace_s); exiting now, uncommitted work "
                            "will be read again by the next worker", self.grace_s)
                logging.shutdown()
                os._exit(0)

            timer = threading.Timer(self.grace_s, expire)
            timer.daemon = True
            timer.start()

        def _on_sigterm(self) -> None:
            self._arm()
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            self._arm()
            super()._on_sigint()

    return GracefulWorker
