"""Foundation: the real broker and Redis answer, and a Faust app in its own process round-trips a topic."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic

from stream_app.runtime.connections import kafka_python_kwargs

pytestmark = pytest.mark.integration

ECHO_APP = Path(__file__).with_name("faust_echo_app.py")


def test_redis_round_trip_through_project_settings(redis_client, stream_config):
    key = f"{stream_config.redis_prefix}:probe"
    redis_client.set(key, b"\x00\x01payload", ex=60)
    assert redis_client.get(key) == b"\x00\x01payload"
    assert 0 < redis_client.ttl(key) <= 60


def test_faust_worker_process_consumes_and_produces(stream_config, unique_name, tmp_path):
    kafka_kwargs = kafka_python_kwargs(stream_config.kafka)
    topic_in, topic_out = unique_name("echo-in"), unique_name("echo-out")
    admin = KafkaAdminClient(**kafka_kwargs)
    admin.create_topics([NewTopic(topic_in, 2, 1), NewTopic(topic_out, 2, 1)])
    admin.close()

    env = dict(
        os.environ,
        ECHO_APP_ID=stream_config.app_id,
        ECHO_IN=topic_in,
        ECHO_OUT=topic_out,
        BROKER=stream_config.kafka.broker_urls()[0],
    )
    log_path = tmp_path / "echo.log"
    with log_path.open("wb") as log_file:
        worker = subprocess.Popen(
            [sys.executable, str(ECHO_APP), "--datadir", str(tmp_path / "faust-data"),
             "worker", "--loglevel", "warn"],
            env=env, stdout=log_file, stderr=subprocess.STDOUT,
        )
    try:
        producer = KafkaProducer(**kafka_kwargs)
        sent = {f"k{i}".encode(): f"value-{i}".encode() for i in range(20)}
        for key, value in sent.items():
            producer.send(topic_in, key=key, value=value)
        producer.flush()
        producer.close()

        consumer = KafkaConsumer(topic_out, auto_offset_reset="earliest", **kafka_kwargs)
        received: dict[bytes, bytes] = {}
        deadline = time.monotonic() + 90
        while len(received) < len(sent) and time.monotonic() < deadline:
            assert worker.poll() is None, f"faust worker exited early:\n{log_path.read_text()}"
            for records in consumer.poll(timeout_ms=500).values():
                received.update({r.key: r.value for r in records})
        consumer.close()
        assert received == {k: v.upper() for k, v in sent.items()}, log_path.read_text()[-3000:]
    finally:
        worker.terminate()
        worker.wait(timeout=30)
