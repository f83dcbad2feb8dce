"""Run one worker process: check config and model, create topics, serve metrics, run the faust app."""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path

from stream_app.config import StreamConfig
from stream_app.runtime.connections import check_connections
from stream_app.runtime.topics import ensure_topics

log = logging.getLogger(__name__)


def run_worker(cfg: StreamConfig, *, loglevel: str = "info", datadir: Path | None = None) -> None:
    """Blocks until SIGTERM/SIGINT; exits the process (faust's worker owns the event loop)."""
    import faust
    import torch

    from stream_app.runtime.faust_app import build_pipeline, create_app
    from stream_app.runtime.metrics import Metrics
    from stream_app.runtime.model_swap import file_signature
    from stream_app.service.model_runner import load_scorer

    # until faust's worker takes the signals over: a SIGTERM during start-up (model load, waiting for
    # the broker) is a clean stop, nothing is in flight yet
    signal.signal(signal.SIGTERM, _exit_cleanly)
    if cfg.model.torch_threads:
        torch.set_num_threads(cfg.model.torch_threads)
    signature = file_signature(cfg.model.checkpoint)  # before loading: a file replaced meanwhile is swapped in
    # a model of other channels is a config error: said at once, not after waiting for a broker that is down
    scorer = load_scorer(cfg.model, cfg.validation.channels)
    # refused credentials or TLS settings stop the worker here with one error naming the setting (exit 2);
    # a broker or Redis that is down is waited for
    check_connections(cfg)
    ensure_topics(cfg)
    metrics = Metrics()
    pipeline = build_pipeline(cfg, scorer, metrics, checkpoint_signature=signature)
    port = metrics.serve(cfg.metrics.port, cfg.metrics.host, health=pipeline.health)
    log.info("metrics on http://%s:%d/metrics, readiness on /health", cfg.metrics.host, port)
    app = create_app(pipeline, datadir=datadir)
    worker = _worker_with_grace(faust.Worker)(app, loglevel=loglevel, redirect_stdouts=False)
    worker.grace_s = cfg.resilience.shutdown_grace_s
    worker.execute_from_commandline()


def _exit_cleanly(signum: int, _frame) -> None:
    log.info("stopped during start-up (signal %d)", signum)
    raise SystemExit(0)


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
