"""The CLI in-process with CliRunner (no services): no secrets in its output, clear errors for missing extras."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from stream_app.cli import cli
from stream_app.errors import ConfigError

SECRET = "sasl-secret-9d81f0"
REDIS_SECRET = "redis-secret-55ab17"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner(env={"STREAM_APP__KAFKA__SASL_PASSWORD": SECRET, "STREAM_APP__REDIS__PASSWORD": REDIS_SECRET})


@pytest.mark.parametrize("args", [["worker", "--help"], ["--help"]], ids=["worker-help", "top-help"])
def test_help_does_not_show_secrets(runner, args):
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    assert SECRET not in result.output and REDIS_SECRET not in result.output


def test_worker_help_documents_config_override(runner):
    result = runner.invoke(cli, ["worker", "--help"])
    assert "--config" in result.output and "STREAM_APP__" in result.output


def test_worker_config_error_does_not_show_secrets(runner, monkeypatch):
    import stream_app.runtime.worker

    def must_not_run(*args, **kwargs):
        raise AssertionError("the worker started despite an invalid config")

    monkeypatch.setattr(stream_app.runtime.worker, "run_worker", must_not_run)
    # SASL protocol without a mechanism or username: load_config fails before the worker starts anything
    env = {"STREAM_APP__KAFKA__SECURITY_PROTOCOL": "SASL_SSL", "STREAM_APP__KAFKA__SASL_MECHANISM": None,
           "STREAM_APP__KAFKA__SASL_USERNAME": None}
    result = runner.invoke(cli, ["worker"], env=env)
    assert isinstance(result.exception, ConfigError), result.output
    assert "kafka" in str(result.exception)
    for text in (result.output, str(result.exception)):
        assert SECRET not in text and REDIS_SECRET not in text


def test_evaluate_uea_without_sktime_says_how_to_install_it(runner, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "sktime" else find_spec(name, *a))
    result = runner.invoke(cli, ["evaluate", "--uea", "JapaneseVowels"])
    assert result.exit_code == 1
    assert "sktime" in result.output and "[uea]" in result.output
