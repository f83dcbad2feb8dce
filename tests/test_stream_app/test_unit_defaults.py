"""Defaults an operator relies on without reading the code: loopback only, state found from where you are."""

from __future__ import annotations

from pathlib import Path

import yaml

from stream_app.config import load_config
from stream_app.tools.devstack import KAFKA_POM, DevstackSettings, kafka_cluster_id

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_and_health_listen_on_loopback_unless_widened():
    assert load_config(environ={}).metrics.host == "127.0.0.1"
    assert load_config(environ={"STREAM_APP__METRICS__HOST": "0.0.0.0"}).metrics.host == "0.0.0.0"


def test_compose_publishes_the_worker_port_on_loopback_only():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    # the host port is a variable (WORKER_METRICS_PORT, default 9464); the address is always loopback
    assert compose["services"]["worker"]["ports"] == ["127.0.0.1:${WORKER_METRICS_PORT:-9464}:9464"]


def test_devstack_state_is_found_from_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("DEVSTACK_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert DevstackSettings.from_env().root == tmp_path / ".devstack"
    monkeypatch.setenv("DEVSTACK_DIR", str(tmp_path / "elsewhere"))
    assert DevstackSettings.from_env().root == tmp_path / "elsewhere"


def test_the_kafka_pom_ships_inside_the_package():
    assert KAFKA_POM.is_file()
    assert "stream_app" in KAFKA_POM.parts  # package data, found wherever the package is installed


def test_kafka_cluster_ids_never_start_with_a_dash(monkeypatch):
    # One uuid in 64 encodes to an id starting with "-", which the format command's parser reads
    # as an option: devstack once failed in CI that way.
    import uuid

    uuids = iter([uuid.UUID(bytes=b"\xf8" + bytes(15)), uuid.UUID(bytes=b"\x01" * 16)])
    monkeypatch.setattr(uuid, "uuid4", lambda: next(uuids))
    assert kafka_cluster_id() == "AQEBAQEBAQEBAQEBAQEBAQ"  # the first draw, "-AAA…", is skipped
