"""Prometheus metrics of the dashboard server (its own `/metrics`).

It reads both ends of the pipeline, so its counters still move when the worker is down: readings and end
markers seen without predictions seen is the "no predictions while readings arrive" alert
(configs/prometheus-alerts.yml). It also exports the worker's ingest lag on the sensor topic.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class DashboardMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.readings_seen = Counter(
            "casting_dashboard_readings_seen_total", "Valid sensor readings seen on the sensor topic", registry=r
        )
        self.end_markers_seen = Counter(
            "casting_dashboard_end_markers_seen_total", "Valid end markers seen on the sensor topic", registry=r
        )
        self.predictions_seen = Counter(
            "casting_dashboard_predictions_seen_total", "Predictions seen on the predictions topic", registry=r
        )
        self.defects_seen = Counter(
            "casting_dashboard_defects_seen_total", "Predictions with predicted_defect true", registry=r
        )
        self.malformed = Counter(
            "casting_dashboard_malformed_total", "Records the dashboard could not read, by topic", ["topic"],
            registry=r,
        )
        for topic in ("sensors", "predictions", "deadletter"):
            self.malformed.labels(topic)
        self.sensor_lag = Gauge(
            "casting_sensor_topic_lag_records",
            "Records on the sensor topic not yet committed by the worker's ingest group", ["group"], registry=r,
        )
        self.clients = Gauge("casting_dashboard_clients", "Browsers connected to the live stream", registry=r)
        self.castings_kept = Gauge(
            "casting_dashboard_castings_kept", "Castings held in memory (at most dashboard.max_castings)",
            registry=r,
        )
