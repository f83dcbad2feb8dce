"""`stream-app train` / `stream-app evaluate` in-process through click's CliRunner."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from stream_app.cli_model import evaluate, train

TINY = {
    "LSTM__ARCHITECTURE__ATTENTION_DIM": "8",
    "LSTM__CLASSIFIER__HIDDEN_DIMS": "[8]",
    "LSTM__TRAINING__BATCH_SIZE": "16",
}


@pytest.fixture
def runner():
    return CliRunner()


def test_train_then_evaluate(runner, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(
        train, ["--synthetic", "80", "--seed", "1", "--output-dir", str(out), "--epochs", "1", "--no-progress"],
        env=TINY,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "AUC-ROC" in result.output and (out / "model.pt").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["architecture"]["attention_dim"] == 8
    assert metrics["config"]["training"]["num_epochs"] == 1

    report = tmp_path / "eval.json"
    result = runner.invoke(evaluate, ["--checkpoint", str(out / "model.pt"), "--output", str(report)])
    assert result.exit_code == 0, result.output
    assert json.loads(report.read_text())["lstm"]["auc_roc"] == pytest.approx(metrics["test"]["lstm"]["auc_roc"])


def test_train_needs_exactly_one_data_source(runner, tmp_path):
    result = runner.invoke(train, ["--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "exactly one of --data" in result.output


def test_bad_config_key_is_named(runner, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lstm_model:\n  architecture:\n    hidden_size: 48\n")
    result = runner.invoke(train, ["--config", str(bad), "--synthetic", "40", "--output-dir", str(tmp_path)])
    assert result.exit_code == 2 and "architecture.hidden_size" in result.output


def test_train_reads_the_product_config_from_any_directory(runner, tmp_path, monkeypatch):
    """Without --config the run is configs/lstm.yaml's (the shipped model's), never the design's defaults."""
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        train, ["--synthetic", "60", "--output-dir", "run", "--epochs", "1", "--no-progress"], env=TINY
    )
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "metrics.json").read_text())["config"]
    assert config["architecture"]["hidden_size"] == 32 and config["architecture"]["num_layers"] == 1
    assert config["training"]["learning_rate"] == 0.005
