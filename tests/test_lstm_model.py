"""Public API of models.lstm_model (names and behaviour fixed by the original design)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from models.config import ConfigError, load_lstm_config, validate_lstm_config
from models.lstm_model import (
    CastingSequenceDataset,
    LSTMModelVariants,
    LSTMPerformanceTracker,
    SteelDefectLSTM,
    create_default_lstm_config,
)

ROOT = Path(__file__).resolve().parent.parent


def tiny_config(**arch) -> dict:
    config = create_default_lstm_config()
    config["architecture"].update({"hidden_size": 32, "num_layers": 1, "attention_dim": 8, **arch})
    config["classifier"]["hidden_dims"] = [8]
    return config


@pytest.fixture
def make_model():
    def factory(seed: int = 0, **arch) -> SteelDefectLSTM:
        torch.manual_seed(seed)
        return SteelDefectLSTM(tiny_config(**arch)).eval()

    return factory


def batch(b: int = 4, t: int = 30, c: int = 5, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(b, t, c)).astype(np.float32)


class TestSteelDefectLSTM:
    @pytest.fixture(autouse=True)
    def _no_grad(self):
        with torch.no_grad():
            yield

    def test_forward_numpy_and_tensor_give_logits_per_sequence(self, make_model):
        model = make_model()
        x = batch()
        out_np = model(x)
        out_t = model(torch.from_numpy(x))
        assert out_np.shape == (4,)
        torch.testing.assert_close(out_np, out_t)

    @pytest.mark.parametrize("conv", [{}, {"conv_channels": 6}, {"conv_channels": 6, "conv_layers": 3}])
    @pytest.mark.parametrize("bidirectional", [False, True])
    @pytest.mark.parametrize("num_layers", [1, 2])
    def test_padding_never_changes_a_result(self, make_model, bidirectional, num_layers, conv):
        model = make_model(bidirectional=bidirectional, num_layers=num_layers, **conv)
        rng = np.random.default_rng(1)
        seqs = [rng.normal(size=(n, 5)).astype(np.float32) for n in (7, 30, 18)]
        padded = np.zeros((3, 30, 5), np.float32)
        for i, s in enumerate(seqs):
            padded[i, : len(s)] = s
        padded[0, 7:] = 1e3  # garbage in the padding must not matter
        lengths = [7, 30, 18]
        together = model(padded, lengths)
        for i, s in enumerate(seqs):
            alone = model(s[None])
            assert abs(float(together[i]) - float(alone[0])) < 1e-5

    def test_float64_model_accepts_float32_and_float64_input(self, make_model):
        model = make_model()
        x = batch(2, 12)
        expected = model(x, [12, 7]).double()
        model = model.double()  # the service scores in float64
        torch.testing.assert_close(model(x, [12, 7]), expected, atol=1e-5, rtol=0)
        assert model(torch.from_numpy(x).double(), [12, 7]).dtype == torch.float64

    def test_attention_masked_and_normalised(self, make_model):
        model = make_model(bidirectional=True)
        model(batch(3, 25), sequence_lengths=np.array([25, 10, 1]))
        att = model.get_attention_weights()
        assert att.shape == (3, 25)
        assert torch.all(att[1, 10:] == 0) and torch.all(att[2, 1:] == 0)
        torch.testing.assert_close(att.sum(dim=1), torch.ones(3))
        assert float(att[2, 0]) == pytest.approx(1.0)

    def test_attention_before_forward_raises(self, make_model):
        with pytest.raises(RuntimeError):
            make_model().get_attention_weights()

    def test_forward_with_attention_returns_both_and_keeps_no_state(self, make_model):
        model = make_model(bidirectional=True)
        x, lengths = batch(3, 25), [25, 10, 1]
        logits, att = model.forward_with_attention(x, lengths)
        assert logits.shape == (3,) and att.shape == (3, 25)
        assert torch.all(att[1, 10:] == 0) and torch.all(att[2, 1:] == 0)
        torch.testing.assert_close(att.sum(dim=1), torch.ones(3))
        with pytest.raises(RuntimeError):  # nothing recorded: get_attention_weights belongs to forward
            model.get_attention_weights()
        torch.testing.assert_close(model(x, lengths), logits, rtol=0, atol=0)  # the same numbers as forward's
        torch.testing.assert_close(model.get_attention_weights(), att, rtol=0, atol=0)
        model.forward_with_attention(batch(2, 7, seed=1))
        torch.testing.assert_close(model.get_attention_weights(), att, rtol=0, atol=0)  # still the last forward's

    def test_interleaved_calls_return_each_their_own_attention(self, make_model):
        """A second call that starts and ends inside the first (from a hook on the attention module, i.e.
        after the first has computed its attention and before its head runs) changes neither's result."""
        model = make_model()
        x1, l1 = batch(3, 20, seed=1), [20, 9, 4]
        x2, l2 = batch(2, 12, seed=2), [5, 12]
        want1, want2 = model.forward_with_attention(x1, l1), model.forward_with_attention(x2, l2)
        inner: list[tuple[torch.Tensor, torch.Tensor]] = []

        def call_inside(module, args, output):
            if not inner and args[0].shape[0] == 3:  # only inside the outer call
                inner.append(model.forward_with_attention(x2, l2))

        handle = model.attention.register_forward_hook(call_inside)
        try:
            outer = model.forward_with_attention(x1, l1)
        finally:
            handle.remove()
        assert len(inner) == 1
        assert outer[1].shape == (3, 20) and inner[0][1].shape == (2, 12)
        for got, want in ((outer, want1), (inner[0], want2)):
            torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)  # logits
            torch.testing.assert_close(got[1], want[1], rtol=0, atol=0)  # attention

    def test_forward_with_attention_autograd_follows_the_input(self, make_model):
        model = make_model()
        with torch.enable_grad():
            logits, att = model.forward_with_attention(torch.from_numpy(batch(2, 9)), [9, 4])
            assert logits.requires_grad and att.requires_grad  # a tensor runs under the caller's mode
            logits, att = model.forward_with_attention(batch(2, 9), [9, 4])
            assert not logits.requires_grad and not att.requires_grad  # an array builds no graph

    def test_attention_feeds_the_classifier(self, make_model):
        model = make_model()
        x = batch(2, 12)
        before = model(x).detach().clone()
        with torch.no_grad():
            model.attention.score.weight.add_(1.0)  # change only the attention scorer
        assert not torch.allclose(before, model(x))

    def test_bidirectional_readout_sees_the_end(self, make_model):
        model = make_model(bidirectional=True)
        x = batch(1, 20)
        y = x.copy()
        y[0, -1] += 5.0
        assert abs(float(model(x)[0]) - float(model(y)[0])) > 1e-6

    def test_multiclass_head(self):
        config = tiny_config(input_size=12)
        config["classifier"]["num_classes"] = 9
        model = SteelDefectLSTM(config).eval()
        logits = model(batch(4, 10, 12), [10, 5, 3, 7])
        assert logits.shape == (4, 9)
        torch.testing.assert_close(model.predict_proba(batch(4, 10, 12)).sum(-1), torch.ones(4))

    @pytest.mark.parametrize(
        ("shape", "lengths", "match"),
        [((4, 10), None, "batch, steps, channels"), ((2, 10, 3), None, "channels"),
         ((2, 10, 5), [10], "lengths for a batch"), ((2, 10, 5), [11, 3], "lengths must lie"),
         ((2, 10, 5), [0, 3], "lengths must lie")],
    )  # fmt: skip
    def test_bad_input_names_the_problem(self, make_model, shape, lengths, match):
        with pytest.raises(ValueError, match=match):
            make_model()(np.zeros(shape, np.float32), lengths)

    def test_input_normalisation_fitted_on_valid_steps_only(self, make_model):
        model = make_model()
        padded = np.zeros((2, 4, 5), np.float32)
        padded[0, :2] = 2.0
        padded[1, :4] = 4.0
        stats = model.fit_normalization(padded, [2, 4])
        assert stats["mean"][0] == pytest.approx((2 * 2 + 4 * 4) / 6)
        assert model.fit_normalization([padded[0, :2], padded[1]])["mean"] == pytest.approx(stats["mean"])

    def test_layer_outputs_and_freeze(self, make_model):
        model = make_model(bidirectional=True)
        x = batch(2, 9)
        assert model.get_layer_outputs(x, "lstm").shape == (2, 9, 64)
        assert model.get_layer_outputs(x, "attention").shape == (2, 9)
        assert model.get_layer_outputs(x, "pooled").shape == (2, 64)
        with pytest.raises(ValueError, match="unknown layer"):
            model.get_layer_outputs(x, "nope")
        names = ["lstm"]
        model.freeze_layers(names)
        assert names == ["lstm"]
        assert not any(p.requires_grad for p in model.lstm.parameters())
        assert all(p.requires_grad for p in model.classifier.parameters())
        with pytest.raises(ValueError):
            model.freeze_layers(["bogus"])

    def test_gradients_flow_in_train_mode(self, make_model):
        model = make_model().train()
        with torch.enable_grad():  # training passes tensors; an array input runs without a graph
            loss = model(torch.from_numpy(batch(4, 15)), [15, 10, 5, 3]).sum()
            loss.backward()
        assert all(p.grad is not None for p in model.lstm.parameters())

    @pytest.mark.parametrize("variant", ["standard", "bidirectional", "deep", "lightweight"])
    def test_every_variant_builds_and_is_small(self, variant):
        config = LSTMModelVariants.all()[variant]
        model = SteelDefectLSTM(config).eval()
        assert model(batch(2, 8), [8, 4]).shape == (2,)
        assert model.model_size_mb() < 50

    def test_variants_match_their_names(self):
        assert LSTMModelVariants.deep_lstm()["architecture"]["num_layers"] == 4
        assert LSTMModelVariants.bidirectional_lstm()["architecture"]["bidirectional"] is True
        assert LSTMModelVariants.standard_lstm()["architecture"]["bidirectional"] is False
        light = SteelDefectLSTM(LSTMModelVariants.lightweight_lstm())
        assert light.count_parameters() < SteelDefectLSTM(LSTMModelVariants.standard_lstm()).count_parameters()


class TestCastingSequenceDataset:
    def test_list_of_variable_length_sequences(self):
        seqs = [np.ones((n, 5), np.float32) for n in (100, 250, 500)]
        ds = CastingSequenceDataset(seqs, labels=[0, 1, 0])
        stats = ds.get_sequence_stats()
        assert len(ds) == 3
        assert stats["min_length"] == 100 and stats["max_length"] == 500
        assert stats["mean_length"] == pytest.approx(850 / 3)
        assert stats["label_counts"] == {"0": 2, "1": 1}
        x, n, y = ds[1]
        assert x.shape == (250, 5) and n == 250 and y == 1

    def test_padded_array_with_lengths(self):
        padded = np.zeros((2, 10, 5), np.float32)
        ds = CastingSequenceDataset(padded, labels=np.array([1, 0]), sequence_lengths=[4, 10])
        assert ds.lengths.tolist() == [4, 10]
        assert ds[0][0].shape == (4, 5)

    def test_max_length_keeps_the_end(self):
        seq = np.arange(20, dtype=np.float32).reshape(4, 5)
        ds = CastingSequenceDataset([seq], [0], max_length=2)
        np.testing.assert_array_equal(ds[0][0], seq[-2:])

    def test_mismatched_labels_rejected(self):
        with pytest.raises(ValueError, match="labels"):
            CastingSequenceDataset([np.ones((3, 5))], labels=[0, 1])


class TestModelConfiguration:
    def test_default_config_has_the_original_sections(self):
        config = create_default_lstm_config()
        assert set(config) == {"architecture", "classifier", "normalization", "regularization", "training",
                               "data_processing"}  # fmt: skip
        assert config["architecture"]["input_size"] == 5

    def test_yaml_file_names_every_key_of_the_schema(self):
        """configs/lstm.yaml is the product's config on its own: no value comes from the code's defaults."""
        raw = yaml.safe_load((ROOT / "configs" / "lstm.yaml").read_text())["lstm_model"]
        schema = create_default_lstm_config()
        assert {section: set(values) for section, values in raw.items()} == {
            section: set(values) for section, values in schema.items()
        }
        assert load_lstm_config(ROOT / "configs" / "lstm.yaml").to_dict() == raw

    @pytest.mark.parametrize(
        ("section", "key", "value", "bad_key"),
        [("architecture", "hidden_size", 48, "architecture.hidden_size"),
         ("architecture", "num_layers", 5, "architecture.num_layers"),
         ("architecture", "dropout", 1.5, "architecture.dropout"),
         ("classifier", "activation", "swish", "classifier.activation"),
         ("training", "batch_size", 0, "training.batch_size"),
         ("architecture", "hiden_size", 64, "architecture.hiden_size")],
    )  # fmt: skip
    def test_invalid_values_name_the_key(self, section, key, value, bad_key):
        config = create_default_lstm_config()
        config[section][key] = value
        with pytest.raises(ConfigError) as err:
            SteelDefectLSTM(config)
        assert bad_key in str(err.value) and bad_key in err.value.keys

    def test_unknown_section_rejected(self):
        with pytest.raises(ConfigError, match="optimizer"):
            validate_lstm_config({"optimizer": {}})

    def test_env_overrides(self, tmp_path):
        path = tmp_path / "lstm.yaml"
        path.write_text(yaml.safe_dump({"lstm_model": {"architecture": {"hidden_size": 64}}}))
        config = load_lstm_config(path, env={"LSTM__TRAINING__NUM_EPOCHS": "3", "OTHER": "x"})
        assert config.architecture.hidden_size == 64 and config.training.num_epochs == 3
        with pytest.raises(ConfigError, match="architecture.hidden_size"):
            load_lstm_config(path, env={"LSTM__ARCHITECTURE__HIDDEN_SIZE": "7"})

    def test_variant_configs_do_not_share_state(self):
        a = LSTMModelVariants.standard_lstm()
        a["classifier"]["hidden_dims"].append(99)
        assert 99 not in LSTMModelVariants.standard_lstm()["classifier"]["hidden_dims"]


class TestPerformanceTracker:
    def test_summary_from_measurements(self):
        tracker = LSTMPerformanceTracker()
        summary = tracker.get_performance_summary()
        assert summary["meets_auc_target"] is None and summary["meets_inference_target"] is None
        tracker.log_training_metrics(0, {"loss": 0.5, "auc_roc": 0.85})
        tracker.log_validation_metrics(0, {"loss": 0.6, "auc_roc": 0.80})
        tracker.log_validation_metrics(1, {"loss": 0.5, "auc_roc": 0.90})
        tracker.log_inference_time(batch_size=32, inference_time=0.1)
        tracker.log_memory_usage(memory_mb=2048)
        summary = tracker.get_performance_summary()
        assert summary["meets_auc_target"] is True
        assert summary["max_inference_ms_per_sequence"] == pytest.approx(3.125)
        assert summary["meets_inference_target"] is True and summary["meets_memory_target"] is True
        tracker.log_inference_time(batch_size=1, inference_time=0.5)
        assert tracker.get_performance_summary()["meets_inference_target"] is False
