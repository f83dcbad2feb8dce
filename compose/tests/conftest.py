"""Fixtures for the tests of the compose stack; scripts/test-compose.sh brings the stack up and sets
COMPOSE_PROJECT, KAFKA_HOST_PORT and WORKER_METRICS_PORT. Without a stack they fail, they never skip."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from compose_stack import ComposeStack

from tests.test_stream_app.harness import TopicReader

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def stack() -> ComposeStack:
    return ComposeStack(
        project=os.environ.get("COMPOSE_PROJECT", "casting-defect-stream"),
        compose_file=REPO / "docker-compose.yml",
        kafka_host_port=int(os.environ.get("KAFKA_HOST_PORT", "29092")),
        worker_metrics_port=int(os.environ.get("WORKER_METRICS_PORT", "9464")),
    )


@pytest.fixture
def predictions(stack) -> Iterator[TopicReader]:
    """The worker's predictions topic, read from the beginning."""
    cfg = stack.config()
    reader = TopicReader(cfg, cfg.topics.predictions)
    yield reader
    reader.close()


@pytest.fixture
def checkpoint() -> Path:
    """The checkpoint the worker in the container scores with (the config's default, copied into the image)."""
    return REPO / "checkpoints" / "default" / "model.pt"
