"""Prometheus metrics of the worker, served over HTTP (`metrics.port`).

Besides the usual counters, the two things stream frameworks lack and GPU inference servers have:
queue delay (end marker consumed -> its batch starts scoring) and batch fill (batch size / max).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from stream_app.service.ingest_stage import IngestOutcome
from stream_app.service.messages import REASONS
from stream_app.service.scoring_stage import ScoringStats

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
FILL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0)


class Metrics:
    """One registry per worker (tests build several in one process)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.readings_ingested = Counter(
            "casting_readings_ingested_total", "Sensor readings written to the window store", registry=r
        )
        self.messages_consumed = Counter(
            "casting_messages_consumed_total", "Records consumed from the sensor topic", registry=r
        )
        self.ingest_retries = Counter(
            "casting_ingest_batch_retries_total", "Ingest batch attempts retried because Redis or the broker failed",
            registry=r,
        )
        self.repeated_ends = Counter(
            "casting_repeated_end_markers_total",
            "End markers identical to the one that sealed their casting (ignored)", registry=r,
        )
        self.redelivered_readings = Counter(
            "casting_redelivered_readings_total",
            "Readings read again (after a restart or outage) that were already in their sealed window", registry=r,
        )
        self.dependency_up = Gauge(
            "casting_dependency_up", "1 while the worker reaches the dependency, 0 during an outage",
            ["dependency"], registry=r,
        )
        self.outage_seconds = Counter(
            "casting_dependency_outage_seconds_total", "Seconds the worker could not reach the dependency",
            ["dependency"], registry=r,
        )
        self.castings_scored = Counter("casting_castings_scored_total", "Predictions produced", registry=r)
        self.duplicates_resent = Counter(
            "casting_duplicates_resent_total",
            "Re-delivered scoring requests answered with the stored outcome", registry=r,
        )
        self.deadletters = Counter(
            "casting_deadletters_total", "Records or windows sent to the dead-letter topic", ["reason"],
            registry=r,
        )
        for reason in REASONS:  # every reason shows, at 0, from the start: alerts need the series to exist
            self.deadletters.labels(reason)
        self.open_castings = Gauge(
            "casting_open_castings", "Castings with buffered readings and no end marker yet", registry=r
        )
        self.batch_size = Histogram(
            "casting_scoring_batch_size", "Castings per scoring batch", buckets=BATCH_BUCKETS, registry=r
        )
        self.batch_fill = Histogram(
            "casting_scoring_batch_fill", "Scoring batch size / max_batch_size", buckets=FILL_BUCKETS,
            registry=r,
        )
        self.ingest_batch_size = Histogram(
            "casting_ingest_batch_records", "Records per ingest batch", buckets=(1, 10, 100, 1000, 10000),
            registry=r,
        )
        self.queue_delay = Histogram(
            "casting_queue_delay_seconds", "End marker consumed -> its scoring batch starts",
            buckets=LATENCY_BUCKETS_S, registry=r,
        )
        self.inference_time = Histogram(
            "casting_inference_seconds", "Model forward time per batch", buckets=LATENCY_BUCKETS_S, registry=r
        )
        self.end_to_end_latency = Histogram(
            "casting_end_to_end_latency_seconds", "End marker consumed -> prediction produced",
            buckets=LATENCY_BUCKETS_S, registry=r,
        )
        self.model_swaps = Counter(
            "casting_model_swaps_total",
            "New checkpoint files seen at model.checkpoint: swapped in, or refused (the old model kept serving)",
            ["outcome"], registry=r,
        )
        for outcome in ("swapped", "refused"):
            self.model_swaps.labels(outcome)
        self.model_info = Gauge(
            "casting_model_info", "1 for the model version that scores now", ["version"], registry=r
        )

    def set_model(self, version: str) -> None:
        """The serving model's version (the gauge keeps one series at 1)."""
        self.model_info.clear()
        self.model_info.labels(version).set(1)

    def record_ingest(self, outcome: IngestOutcome) -> None:
        """What one ingest batch did (the stage returns it; the loop that ran the batch records it)."""
        self.messages_consumed.inc(outcome.records)
        self.readings_ingested.inc(outcome.readings)
        self.ingest_batch_size.observe(outcome.records)
        if outcome.repeated_ends:
            self.repeated_ends.inc(outcome.repeated_ends)
        if outcome.redelivered_readings:
            self.redelivered_readings.inc(outcome.redelivered_readings)
        for letter in outcome.deadletters:
            self.deadletters.labels(letter.reason).inc()

    def record_scoring(self, stats: ScoringStats, max_batch_size: int) -> None:
        """What one scoring batch did."""
        for delay in stats.queue_delays_s:
            self.queue_delay.observe(delay)
        if stats.scored_batch_size:
            self.batch_size.observe(stats.scored_batch_size)
            self.batch_fill.observe(min(1.0, stats.scored_batch_size / max_batch_size))
        if stats.inference_s is not None:
            self.inference_time.observe(stats.inference_s)
        if stats.resent:
            self.duplicates_resent.inc(stats.resent)
        for reason in stats.new_deadletter_reasons:
            self.deadletters.labels(reason).inc()
        if stats.latencies_s:
            self.castings_scored.inc(len(stats.latencies_s))
        for latency in stats.latencies_s:
            self.end_to_end_latency.observe(latency)

    def serve(self, port: int, host: str = "127.0.0.1", health: Callable[[], dict] | None = None) -> int:
        """Serve `/metrics` (Prometheus) and `/health` (200 when ready, else 503; JSON body from `health()`)
        in a daemon thread; returns the bound port (port 0 picks one)."""
        registry = self.registry
        health = health or (lambda: {"ready": True})

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                path = self.path.split("?", 1)[0]
                if path in ("/metrics", "/"):
                    body, status, kind = generate_latest(registry), 200, CONTENT_TYPE_LATEST
                elif path == "/health":
                    report = health()
                    body = json.dumps(report).encode()
                    status, kind = (200 if report.get("ready") else 503), "application/json"
                else:
                    body, status, kind = b"not found: try /metrics or /health\n", 404, "text/plain"
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args) -> None:  # noqa: A002 - scrapes every few seconds: not logged
                pass

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        return int(server.server_port)
