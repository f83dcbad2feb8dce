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


@pytest.mark.parametrize("num_classes", [1, 3])
def test_an_averaged_ensemble_round_trips_and_scores_as_the_mean_of_its_members(tmp_path, num_classes):
    from models.ensemble import AveragedLSTMs
    from stream_app.service.model_runner import Scorer

    config = LSTMModelVariants.lightweight_lstm()
    config["classifier"]["num_classes"] = num_classes
    torch.manual_seed(0)
    ensemble = AveragedLSTMs([config] * 3).eval()
    rng = np.random.default_rng(1)
    seqs = [rng.normal(size=(n, 5)) for n in (40, 25)]
    ensemble.set_normalization(ensemble.members[0].fit_normalization(seqs))
    x = np.zeros((2, 40, 5), np.float32)
    x[0], x[1, :25] = seqs[0], seqs[1]
    probs = ensemble.predict_proba(x, [40, 25])
    members = [m.predict_proba(x, [40, 25]) for m in ensemble.members]
    torch.testing.assert_close(probs, torch.stack(members).mean(dim=0), rtol=0, atol=1e-6)
    attention = ensemble.get_attention_weights()
    assert torch.all(attention[1, 25:] == 0) and torch.allclose(attention.sum(dim=1), torch.ones(2))

    save_checkpoint(tmp_path / "e.pt", ensemble, metadata={"threshold": 0.4})
    loaded, info = load_checkpoint(tmp_path / "e.pt")
    assert isinstance(loaded, AveragedLSTMs) and len(info["members"]) == 3
    torch.testing.assert_close(loaded.predict_proba(x, [40, 25]), probs, rtol=0, atol=0)
    if num_classes == 1:  # the worker's scorer takes it as it takes one model
        scores = Scorer(loaded, info["version"], torch.device("cpu")).score([seqs[0], seqs[1]])
        assert [s.probability for s in scores] == pytest.approx(probs.tolist(), abs=1e-6)
        assert len(scores[1].attention) == 25
