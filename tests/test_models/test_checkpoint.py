"""models.checkpoint: weights_only round trip, identical logits, stable version."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.checkpoint import load_checkpoint, save_checkpoint
from models.lstm_model import LSTMModelVariants, SteelDefectLSTM


@pytest.mark.parametrize("variant", ["lightweight", "bidirectional"])
def test_save_load_gives_identical_logits(tmp_path, variant):
    torch.manual_seed(0)
    model = SteelDefectLSTM(LSTMModelVariants.all()[variant]).eval()
    rng = np.random.default_rng(0)
    seqs = [rng.normal([1.2, 1520, 150, 200, 25], [0.05, 5, 2, 5, 2], size=(n, 5)) for n in (120, 300)]
    stats = model.fit_normalization(seqs)
    x = np.zeros((2, 300, 5), np.float32)
    x[0, :120], x[1] = seqs[0], seqs[1]
    with torch.no_grad():
        before = model(x, [120, 300])
    info = save_checkpoint(tmp_path / "m.pt", model, normalization=stats, metadata={"threshold": np.float64(0.3)})
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    assert not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, [120, 300]), before, rtol=0, atol=0)
    assert meta["version"] == info["version"] and meta["version"].startswith("v1-")
    assert meta["metadata"]["threshold"] == 0.3
    assert meta["normalization"]["mean"] == pytest.approx(stats["mean"])
    assert meta["config"] == model.config
    # raw payload loads with weights_only=True
    raw = torch.load(tmp_path / "m.pt", weights_only=True)
    assert set(raw) >= {"state_dict", "config", "normalization", "version", "metadata"}


def test_version_depends_on_weights_only(tmp_path):
    torch.manual_seed(0)
    model = SteelDefectLSTM(LSTMModelVariants.lightweight_lstm())
    v1 = save_checkpoint(tmp_path / "a.pt", model, metadata={"a": 1})["version"]
    v2 = save_checkpoint(tmp_path / "b.pt", model, metadata={"a": 2})["version"]
    with torch.no_grad():
        model.classifier[0].weight.add_(0.1)
    v3 = save_checkpoint(tmp_path / "c.pt", model)["version"]
    assert v1 == v2 != v3


def test_rejects_non_plain_metadata_and_foreign_files(tmp_path):
    model = SteelDefectLSTM(LSTMModelVariants.lightweight_lstm())
    with pytest.raises(TypeError, match="plain types"):
        save_checkpoint(tmp_path / "a.pt", model, metadata={"x": object()})
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
