"""The committed default checkpoint the service loads, and the measured results (slow ones marked)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
from models.config import PRODUCT_CONFIG, load_lstm_config
from models.synthetic import generate_castings

METRICS = DEFAULT_CHECKPOINT.parent / "metrics.json"


def test_default_checkpoint_is_small_and_loads_in_eval_mode():
    assert DEFAULT_CHECKPOINT.stat().st_size < 2 * 2**20
    model, info = load_checkpoint(DEFAULT_CHECKPOINT)
    assert not model.training
    assert info["version"] == json.loads(METRICS.read_text())["checkpoint"]["version"]
    assert 0.0 < info["metadata"]["threshold"] < 1.0
    assert len(info["normalization"]["mean"]) == 5


def test_default_checkpoint_records_the_default_channel_set_with_units():
    """The worker compares this with the stream config's validation.channels (names, order, units)."""
    from models.checkpoint import checkpoint_channels
    from stream_app.config import load_config

    _, info = load_checkpoint(DEFAULT_CHECKPOINT)
    configured = [{"name": c.name, "unit": c.unit} for c in load_config(None, environ={}).validation.channels]
    assert checkpoint_channels(info) == configured
    assert info["metadata"]["class_names"] == ["0", "1"]
    assert info["metadata"]["data_summary"]["castings"] == 8000


def test_default_checkpoint_was_trained_with_the_product_config():
    """configs/lstm.yaml (what `stream-app train` reads) holds the shipped model's config, key for key."""
    _, info = load_checkpoint(DEFAULT_CHECKPOINT)
    assert load_lstm_config(PRODUCT_CONFIG).to_dict() == info["config"]
    assert json.loads(METRICS.read_text())["config"] == info["config"]


def test_default_checkpoint_scores_castings_padding_invariantly():
    model, _ = load_checkpoint(DEFAULT_CHECKPOINT)
    seqs = generate_castings(4, seed=11).sequences
    lengths = [len(s) for s in seqs]
    padded = np.zeros((4, max(lengths), 5), np.float32)
    for i, s in enumerate(seqs):
        padded[i, : len(s)] = s
    with torch.inference_mode():
        together = model(padded, lengths)
        weights = model.get_attention_weights()
        for i, s in enumerate(seqs):
            assert abs(float(model(s[None])[0]) - float(together[i])) < 1e-5
    torch.testing.assert_close(weights.sum(1), torch.ones(4))


def test_recorded_metrics_meet_the_targets():
    """The numbers written when the checkpoint was trained (re-measured by the slow test below)."""
    metrics = json.loads(METRICS.read_text())
    assert metrics["test"]["split_sizes"]["test"] >= 2000
    assert all(metrics["test"]["targets"].values()), metrics["test"]["targets"]


@pytest.mark.slow
def test_evaluate_reproduces_the_recorded_metrics(tmp_path: Path):
    from models.evaluate import run_evaluation

    recorded = json.loads(METRICS.read_text())["test"]
    result = run_evaluation(DEFAULT_CHECKPOINT)
    assert result["lstm"]["auc_roc"] == pytest.approx(recorded["lstm"]["auc_roc"], abs=1e-6)
    assert result["baseline"]["auc_roc"] == pytest.approx(recorded["baseline"]["auc_roc"], abs=1e-6)
    assert all(result["targets"].values())


@pytest.mark.slow
@pytest.mark.timeout(1800)  # ~30 s alone; minutes when the 2 cores are shared with other work
def test_japanese_vowels_accuracy():
    from models.uea import run_uea

    result = run_uea("JapaneseVowels", seed=0)
    assert result["test"]["accuracy"] >= 0.95, result["test"]
