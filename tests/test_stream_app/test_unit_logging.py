"""One logging setup for every `stream-app` command, the model's (train, evaluate) included."""

from __future__ import annotations

import logging

import pytest

import stream_app.cli
import stream_app.cli_model
from stream_app.logging_setup import QUIET_LOGGERS, configure_logging


@pytest.fixture
def root_level():
    root = logging.getLogger()
    saved = root.level, {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    yield root
    root.setLevel(saved[0])
    for name, level in saved[1].items():
        logging.getLogger(name).setLevel(level)


def test_both_clis_use_the_one_setup():
    assert stream_app.cli.configure_logging is configure_logging
    assert stream_app.cli_model.configure_logging is configure_logging
    assert not hasattr(stream_app.cli, "_configure_logging") and not hasattr(stream_app.cli_model, "_configure_logging")


def test_verbose_on_a_subcommand_turns_on_debug_after_the_group_configured_info(root_level):
    root_level.setLevel(logging.INFO)
    configure_logging(False)  # the `stream-app` group, no -v
    configure_logging(True)  # then `stream-app train -v`
    assert root_level.level == logging.DEBUG
    assert all(logging.getLogger(name).level == logging.WARNING for name in QUIET_LOGGERS)
