"""The one-command demo: local stack, a worker, the simulator, and a live view of the predictions.

Everything it starts it stops again, on success, on error and on Ctrl-C: the services only if they
were not already running, the worker always.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream_app.config import StreamConfig
from stream_app.errors import StreamAppError
from stream_app.tools.dashboard_process import DashboardProcess
from stream_app.tools.worker_process import WorkerProcess, free_port

log = logging.getLogger(__name__)


@dataclass
class DemoState:
    expected: int
    predictions: list[dict] = field(default_factory=list)
    deadletters: Counter = field(default_factory=Counter)
    started: float = field(default_factory=time.monotonic)
    first_prediction_s: float | None = None


def _top_steps(attention: list[float], k: int = 3) -> str:
    top = np.argsort(-np.asarray(attention))[:k]
    return " ".join(str(int(i)) for i in top)


def _render(state: DemoState, cfg: StreamConfig):
    from rich.table import Table

    threshold = f"{state.predictions[0]['threshold']:.3f}" if state.predictions else "..."
    table = Table(title=f"casting predictions — {len(state.predictions)}/{state.expected} castings "
                        f"(threshold {threshold})", expand=False)
    for column in ("casting", "defect probability", "verdict", "steps with most attention", "latency"):
        table.add_column(column)
    for p in state.predictions[-15:]:
        verdict = "[bold red]DEFECT[/]" if p["predicted_defect"] else "[green]ok[/]"
        table.add_row(p["casting_id"], f"{p['defect_probability']:.3f}", verdict, _top_steps(p["attention"]),
                      f"{p['latency_ms']:.0f} ms")
    if state.deadletters:
        table.caption = "dead letters: " + ", ".join(f"{r} {n}" for r, n in sorted(state.deadletters.items()))
    return table


def _follow(cfg: StreamConfig, state: DemoState, stop: threading.Event, casting_ids: set[str],
            ready: threading.Event) -> None:
    """Collect this run's predictions (by casting id) and the dead letters produced since it began."""
    from kafka import KafkaConsumer, TopicPartition

    from stream_app.runtime.connections import kafka_python_kwargs

    consumer = KafkaConsumer(**kafka_python_kwargs(cfg.kafka), enable_auto_commit=False)
    topics = (cfg.topics.predictions, cfg.topics.deadletter)
    tps = [TopicPartition(t, p) for t in topics for p in (consumer.partitions_for_topic(t) or {0})]
    consumer.assign(tps)
    consumer.seek_to_end()
    for tp in tps:  # resolve the end offsets now, before the simulator produces anything
        consumer.position(tp)
    ready.set()
    seen: set[str] = set()
    while not stop.is_set():
        for records in consumer.poll(timeout_ms=300).values():
            for record in records:
                doc = json.loads(record.value)
                if record.topic == cfg.topics.deadletter:
                    state.deadletters[doc["reason"]] += 1
                elif doc["casting_id"] in casting_ids and doc["casting_id"] not in seen:
                    seen.add(doc["casting_id"])
                    if state.first_prediction_s is None:
                        state.first_prediction_s = time.monotonic() - state.started
                    state.predictions.append(doc)
    consumer.close()


def _dashboard(cfg: StreamConfig, log_dir: Path) -> DashboardProcess:
    """The control-room page on `dashboard.port`, or on a free port when that one is taken."""
    import socket

    port = cfg.dashboard.port
    with socket.socket() as probe:
        if port == 0 or probe.connect_ex(("127.0.0.1", port)) == 0:
            port = free_port()
    return DashboardProcess(cfg, log_dir / "demo-dashboard.log", port=port, new_session=True)


def run_demo(cfg: StreamConfig, *, castings: int, rate_per_s: float, chunk_size: int, bad_share: float,
             timeout_s: float, log_dir: Path, linger_s: float = 0.0) -> DemoState:
    from rich.console import Console
    from rich.live import Live

    from stream_app.runtime.connections import check_connections
    from stream_app.runtime.topics import ensure_topics
    from stream_app.tools import devstack
    from stream_app.tools.simulate import load_castings, name_by_strand, run_simulation

    console = Console()
    if not Path(cfg.model.checkpoint).exists():
        raise StreamAppError(f"no model checkpoint at {cfg.model.checkpoint}: run `stream-app train` first")
    settings = devstack.DevstackSettings.from_env()
    already_up = all(s.healthy for s in devstack.status(settings))
    log_dir.mkdir(parents=True, exist_ok=True)
    worker_log = log_dir / "demo-worker.log"
    worker: WorkerProcess | None = None
    page: DashboardProcess | None = None
    producer: threading.Thread | None = None
    stop = threading.Event()
    state = DemoState(expected=castings)
    try:
        if not already_up:
            console.print("starting Kafka and Redis (stream-app devstack up) ...")
            devstack.up(settings)
        check_connections(cfg)  # wrong credentials or TLS settings: one clear error, before any process starts
        ensure_topics(cfg)
        # the demo's config, as a file; its own session: Ctrl-C reaches the demo only, which then stops it
        worker = WorkerProcess(cfg, worker_log, metrics_port=cfg.metrics.port or None, new_session=True)
        console.print(f"starting a worker (log: {worker_log}, metrics: {worker.url('/metrics')}) ...")
        worker.start()
        page = _dashboard(cfg, log_dir)
        page.start()
        console.print(f"[bold]control-room page: {page.url()}[/]  (log: {page.log_path})")
        strands = 4
        # ids name their strand (DEMO-<time>-S<strand>-<n>), as the simulator interleaves them, for the page
        prefix = time.strftime("DEMO-%H%M%S")
        generated = load_castings(count=castings, seed=int(time.time()) % 10_000, prefix=prefix,
                                  channels=cfg.validation.channels)
        items = name_by_strand(generated, prefix, strands)
        ids = {c.casting_id for c in items}
        ready = threading.Event()
        follower = threading.Thread(target=_follow, args=(cfg, state, stop, ids, ready), daemon=True)
        follower.start()
        ready.wait(timeout=30)
        producer = threading.Thread(
            target=run_simulation, args=(cfg, items),
            kwargs={"strands": strands, "rate_per_s": rate_per_s, "chunk_size": chunk_size, "bad_share": bad_share,
                    "progress": False, "stop": stop},
            daemon=True,
        )
        producer.start()
        deadline = time.monotonic() + timeout_s
        with Live(_render(state, cfg), console=console, refresh_per_second=4) as live:
            while len(state.predictions) < castings and time.monotonic() < deadline:
                if not worker.alive():
                    raise StreamAppError(f"the worker exited (code {worker.returncode}); see {worker_log}")
                time.sleep(0.25)
                live.update(_render(state, cfg))
            live.update(_render(state, cfg))
        if len(state.predictions) < castings:
            console.print(f"[yellow]timed out after {timeout_s:.0f}s with {len(state.predictions)} predictions")
        console.print()
        defects = sum(p["predicted_defect"] for p in state.predictions)
        console.print(f"{len(state.predictions)} castings scored, {defects} flagged as defective; "
                      f"first prediction {state.first_prediction_s or float('nan'):.1f}s after start")
        if linger_s > 0:
            console.print(f"the page stays up for {linger_s:.0f}s more: {page.url()} (Ctrl-C stops it all)")
            time.sleep(linger_s)
        return state
    except KeyboardInterrupt:
        console.print("\n[yellow]interrupted: stopping what the demo started ...")
        raise
    finally:
        stop.set()
        if producer is not None:
            producer.join(timeout=30)
        if page is not None:
            page.stop()
        if worker is not None:
            console.print("stopping the worker ...")
            worker.stop()
        if not already_up:
            console.print("stopping Kafka and Redis ...")
            devstack.down(settings)
