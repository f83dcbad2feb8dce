"""The dashboard's server against a real broker: it keeps running through malformed records and a broker
restart (a private broker, killed and started again), and a browser that disconnects is cleaned up."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient

from stream_app.runtime.connections import kafka_python_kwargs
from stream_app.tools import devstack
from stream_app.tools.dashboard_process import DashboardProcess
from stream_app.tools.simulate import casting_messages
from stream_app.tools.worker_process import free_port
from tests.test_stream_app.harness import create_topics, make_castings

pytestmark = [
    pytest.mark.integration,
    # the devstack starts its broker detached (it outlives the Popen object on purpose: `down` stops it by pid)
    pytest.mark.filterwarnings("ignore:subprocess .* is still running:ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


def prediction_doc(casting_id: str, n_steps: int) -> bytes:
    return json.dumps({
        "casting_id": casting_id, "defect_probability": 0.91, "predicted_defect": True, "threshold": 0.5,
        "n_steps": n_steps, "attention": [1.0 / n_steps] * n_steps, "model_version": "v-test",
        "scored_at": "2026-01-01T00:00:00.000+00:00", "latency_ms": 5.0, "gaps_filled": 0, "batch_size": 1,
    }).encode()


def send(cfg, topic: str, messages) -> None:
    producer = KafkaProducer(**kafka_python_kwargs(cfg.kafka), acks="all", max_request_size=4_000_000)
    for key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def send_casting(cfg, casting_id: str, values) -> None:
    send(cfg, cfg.topics.sensors, ((casting_id.encode(), m) for m in casting_messages(casting_id, values, 25)))
    send(cfg, cfg.topics.predictions, [(casting_id.encode(), prediction_doc(casting_id, len(values)))])


def shown(page: DashboardProcess) -> dict[str, dict]:
    return {row["casting_id"]: row for row in page.get_json("/api/castings")}


@pytest.fixture
def private_broker(tmp_path):
    """A Kafka broker of the test's own (the shared one serves the other tests), with the shared stack's jars."""
    shared = devstack.DevstackSettings.from_env()
    settings = devstack.DevstackSettings(root=tmp_path / "stack", kafka_port=free_port(),
                                         kafka_controller_port=free_port(), redis_port=free_port())
    settings.root.mkdir(parents=True)
    if shared.jars_dir.exists():
        (settings.root / "kafka-jars").symlink_to(shared.jars_dir)
    devstack.up(settings)
    yield settings
    devstack.down(settings)


@pytest.mark.host_tools
def test_survives_malformed_records_and_a_broker_restart(private_broker, stream_config_factory, tmp_path):
    cfg = stream_config_factory(kafka={"bootstrap_servers": [private_broker.kafka_bootstrap]})
    create_topics(cfg)
    first, second = make_castings(2, seed=5, prefix="L1-S1")
    with DashboardProcess(cfg, tmp_path / "dashboard.log") as page:
        send(cfg, cfg.topics.sensors, [(b"L1-S1-bad", b"{not json"), (None, b"{}")])
        send(cfg, cfg.topics.predictions, [(b"x", b"\xff\xfe"), (b"y", prediction_doc("y", 3)[:-20]),
                                           (b"z", json.dumps({"casting_id": "z"}).encode())])
        send(cfg, cfg.topics.deadletter, [(b"x", b"garbage")])
        send_casting(cfg, first.casting_id, first.values)
        page.wait_for(lambda: first.casting_id in shown(page), "the first casting on the page", 60)
        assert shown(page)[first.casting_id]["steps_seen"] == len(first.values)
        # the broker probe runs every 2 s with a timeout; on a loaded machine one may miss, the next one answers
        page.wait_for(lambda: page.get_json("/api/summary")["connected"], "the broker probe to answer", 60)
        metrics = urllib_text(page.url("/metrics"))
        assert 'casting_dashboard_malformed_total{topic="sensors"} 2.0' in metrics
        assert 'casting_dashboard_malformed_total{topic="predictions"} 3.0' in metrics
        assert 'casting_dashboard_malformed_total{topic="deadletter"} 1.0' in metrics

        assert devstack.kill(private_broker, "kafka")
        page.wait_for(lambda: page.health()[0] == 503, "the dashboard to notice the broker is gone", 120)
        time.sleep(3)  # a few failed fetches while the broker is away
        assert page.alive()
        devstack.up(private_broker)
        page.wait_for(lambda: page.health()[0] == 200, "the dashboard to reach the broker again", 180)
        send_casting(cfg, second.casting_id, second.values)
        page.wait_for(lambda: second.casting_id in shown(page), "a casting sent after the restart", 120)
        assert shown(page)[second.casting_id]["steps_seen"] == len(second.values)
        assert first.casting_id in shown(page)  # kept across the outage

        # read-only towards Kafka too: the page's server joined no consumer group and committed nothing
        admin = KafkaAdminClient(**kafka_python_kwargs(cfg.kafka))
        try:
            assert list(admin.list_groups()) == []
        finally:
            admin.close()


def urllib_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read().decode()


def open_and_drop(port: int) -> None:
    """A browser that opens the live stream, reads the first event and goes away."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        received = b""
        while b"event: snapshot" not in received:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the stream before its first event"
            received += chunk


def test_disconnected_clients_are_cleaned_up(stream_config_factory, tmp_path):
    cfg = stream_config_factory()
    create_topics(cfg)
    with DashboardProcess(cfg, tmp_path / "dashboard.log") as page:
        for _ in range(100):  # warm-up: allocator pools, first-use imports
            open_and_drop(page.port)
        page.wait_for(lambda: page.health()[1].get("clients") == 0, "the warm-up clients to be gone", 30)
        rss_before = page.rss_bytes()
        for _ in range(1000):
            open_and_drop(page.port)
        page.wait_for(lambda: page.health()[1].get("clients") == 0, "every disconnected client to be gone", 60)
        rss_after = page.rss_bytes()
        growth_mib = (rss_after - rss_before) / 2**20
        print(f"dashboard RSS {rss_before / 2**20:.1f} MiB -> {rss_after / 2**20:.1f} MiB over 1,000 "
              f"connects/disconnects ({growth_mib:+.2f} MiB)")
        assert "casting_dashboard_clients 0.0" in urllib_text(page.url("/metrics"))
        assert growth_mib < 4.0
        assert Path(page.log_path).read_text().count("Traceback") == 0
