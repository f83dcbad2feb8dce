"""Training loop, pipeline and evaluation on tiny data (seconds); the real runs are in docs/MODEL.md."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from models.baseline import summary_features
from models.checkpoint import load_checkpoint
from models.config import validate_lstm_config
from models.dataset import CastingSequenceDataset, LengthBucketSampler
from models.dataset_io import DataSource, split_dataset
from models.evaluate import run_evaluation
from models.lstm_model import SteelDefectLSTM
from models.metrics import binary_metrics, choose_threshold
from models.pipeline import run_training
from models.synthetic import generate_castings
from models.train import fit, predict_dataset
from stream_app.config import load_config


def tiny_config(**training):
    return validate_lstm_config(
        {
            "architecture": {"hidden_size": 32, "attention_dim": 8},
            "classifier": {"hidden_dims": [8]},
            "training": {"batch_size": 16, "num_epochs": 2, **training},
        }
    )


def test_fit_learns_a_separable_toy_problem():
    rng = np.random.default_rng(0)
    seqs, labels = [], []
    for i in range(96):
        x = rng.normal(size=(int(rng.integers(10, 30)), 5)).astype(np.float32)
        label = i % 2
        if label:
            x[int(rng.integers(0, len(x))), 2] += 6.0  # one spike anywhere
        seqs.append(x)
        labels.append(label)
    ds = CastingSequenceDataset(seqs[:64], labels[:64])
    val = CastingSequenceDataset(seqs[64:], labels[64:])
    torch.manual_seed(0)
    model = SteelDefectLSTM(tiny_config())
    model.fit_normalization(ds.sequences)
    result = fit(model, ds, val, tiny_config(num_epochs=15, learning_rate=1e-2).training,
                 tiny_config().regularization, progress=False)  # fmt: skip
    assert result.best_score > 0.9
    assert not model.training
    assert result.history[result.best_epoch - 1]["val_auc_pr"] == pytest.approx(result.best_score)


def test_length_bucket_sampler_covers_everything_once_and_never_yields_one():
    lengths = np.array([5, 300, 120, 7, 499, 250, 101, 33, 64])
    batches = list(LengthBucketSampler(lengths, batch_size=4, seed=1))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    assert all(len(b) >= 2 for b in batches)
    assert len(batches) == len(LengthBucketSampler(lengths, 4))


def test_predict_dataset_returns_dataset_order():
    model = SteelDefectLSTM(tiny_config()).eval()
    rng = np.random.default_rng(1)
    seqs = [rng.normal(size=(n, 5)).astype(np.float32) for n in (40, 5, 17, 33, 8)]
    probs = predict_dataset(model, CastingSequenceDataset(seqs, [0] * 5), batch_size=2)
    with torch.no_grad():
        for i, s in enumerate(seqs):
            assert probs[i] == pytest.approx(float(torch.sigmoid(model(s[None]))[0]), abs=1e-6)


def test_metrics_and_threshold():
    labels = np.array([0, 0, 1, 1, 0, 1])
    probs = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    m = binary_metrics(labels, probs, 0.3)
    assert m["recall"] == 1.0 and m["auc_roc"] == pytest.approx(8 / 9)
    assert choose_threshold(labels, probs) == pytest.approx(0.35)


def test_summary_features_shape_and_slope():
    x = np.tile(np.arange(10, dtype=np.float32)[:, None], (1, 5)) * 2
    feats = summary_features([x])
    assert feats.shape == (1, 25)
    np.testing.assert_allclose(feats[0, 20:], 2.0)


def test_splits_are_disjoint_stratified_and_deterministic():
    data = generate_castings(200, seed=0)
    a, b = split_dataset(data, seed=5), split_dataset(data, seed=5)
    for key in ("train", "val", "test"):
        np.testing.assert_array_equal(a.indices[key], b.indices[key])
    all_idx = np.concatenate(list(a.indices.values()))
    assert len(np.unique(all_idx)) == 200
    assert len(a.indices["test"]) == 50


def test_pipeline_writes_artifacts_and_evaluate_reproduces_them(tmp_path):
    out = tmp_path / "run"
    channels = [{"name": c.name, "unit": c.unit} for c in load_config(environ={}).validation.channels]
    run_training(tiny_config(num_epochs=1), DataSource(synthetic_n=120, seed=2), out, progress=False,
                 channels=channels)
    for name in ("model.pt", "metrics.json", "history.jsonl", "learning_curves.png", "roc_pr.png"):
        assert (out / name).stat().st_size > 0
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["lstm"]["n"] == 30 and "oracle" in saved["test"] and "baseline" in saved["test"]
    model, info = load_checkpoint(out / "model.pt")
    assert info["metadata"]["data"] == {"path": None, "synthetic_n": 120, "seed": 2}
    assert info["metadata"]["channels"] == channels
    assert model.get_normalization()["mean"][1] == pytest.approx(1520, rel=0.01)
    again = run_evaluation(out / "model.pt", output=tmp_path / "eval.json")
    assert again["lstm"]["auc_roc"] == pytest.approx(saved["test"]["lstm"]["auc_roc"])
    assert again["baseline"]["auc_roc"] == pytest.approx(saved["test"]["baseline"]["auc_roc"])
    att = again["attention"]
    assert att["n"] > 0 and 0.0 <= att["mean_attention_in_span"] <= 1.0 and 0 < att["mean_span_share_of_steps"] < 1
    other = run_evaluation(out / "model.pt", DataSource(synthetic_n=40, seed=9))
    assert other["lstm"]["n"] == 40 and other["data"]["split"] == "all"


def test_torch_threads_are_restored():
    from models.train import torch_threads

    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
