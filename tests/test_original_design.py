"""The original design's API as its users wrote against it (docs/ORIGINAL_DESIGN.md, issue 15).

Every fenced Python block of the design document runs as written, in order, in one namespace. The
names the document leaves to the reader (sample data, the user's own training functions and
measurements) come from ``reader_namespace`` below, never from edits to the blocks. The other tests
pin the original names the blocks do not exercise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from sklearn.metrics import roc_auc_score
from torch.utils.data import DataLoader

from models.config import PRODUCT_CONFIG, ConfigError, load_lstm_config
from models.dataset import collate_padded
from models.lstm_model import (
    CastingSequenceDataset,
    LSTMPerformanceTracker,
    SteelDefectLSTM,
    create_default_lstm_config,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "ORIGINAL_DESIGN.md"

PYTHON_BLOCK_HEADINGS = [
    "Core LSTM Model (`SteelDefectLSTM`)",
    "Model Variants",
    "Dataset Handling (`CastingSequenceDataset`)",
    "Performance Tracking (`LSTMPerformanceTracker`)",
    "1. Bidirectional Processing",
    "2. Variable Sequence Lengths",
    "3. Normalization Options",
    "4. Model Interpretability",
    "Basic Usage",
    "Advanced Configuration",
    "Performance Monitoring",
]


def design_blocks(language: str) -> list[tuple[str, int, str]]:
    """(heading, first line number, source) of each fenced block in ``language``, in document order."""
    blocks: list[tuple[str, int, str]] = []
    heading, fence, start, body = "", None, 0, []
    for number, line in enumerate(DOC.read_text(encoding="utf-8").splitlines(), start=1):
        if fence is None:
            if line.startswith("```"):
                fence, start, body = line[3:].strip(), number + 1, []
            elif line.startswith("#"):
                heading = line.lstrip("#").strip()
        elif line.startswith("```"):
            if fence == language:
                blocks.append((heading, start, "\n".join(body) + "\n"))
            fence = None
        else:
            body.append(line)
    return blocks


def reader_namespace() -> dict[str, Any]:
    """What a reader of the design supplies: numpy, sample data, a training loop, measurements."""
    np.random.seed(0)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    batch_size, max_seq_len, input_size = 8, 300, 5
    seq_lengths = rng.integers(100, max_seq_len + 1, batch_size)
    sequences = rng.normal(size=(batch_size, max_seq_len, input_size)).astype(np.float32)
    labels = np.arange(batch_size) % 2

    def loader(n: int, seed: int) -> DataLoader:
        r = np.random.default_rng(seed)
        y = np.arange(n) % 2
        x = r.normal(size=(n, 40, input_size)).astype(np.float32) + y[:, None, None]
        ds = CastingSequenceDataset(x, y, item_format="pair")  # the original (sequence, label) items
        return DataLoader(ds, batch_size=batch_size, shuffle=False)

    def train_one_epoch(model: torch.nn.Module, data: DataLoader) -> dict[str, float]:
        model.train()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        losses, scores, targets = [], [], []
        for x, y in data:
            logits = model(x)  # tensors: trained with gradients
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
            scores.extend(logits.detach().tolist())
            targets.extend(y.tolist())
        return {"loss": float(np.mean(losses)), "auc_roc": float(roc_auc_score(targets, scores))}

    @torch.no_grad()
    def validate(model: torch.nn.Module, data: DataLoader) -> dict[str, float]:
        model.eval()
        pairs = [(model(x), y) for x, y in data]
        logits, y = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, y).item()
        return {"loss": loss, "auc_roc": float(roc_auc_score(y.numpy(), logits.numpy()))}

    return {
        "np": np,
        "batch_size": batch_size,
        "max_seq_len": max_seq_len,
        "input_size": input_size,
        "sequences": sequences,
        "labels": labels,
        "seq_lengths": seq_lengths,
        "sequence_lengths": seq_lengths.tolist(),
        "epoch": 0,
        "num_epochs": 2,
        "train_one_epoch": train_one_epoch,
        "validate": validate,
        "train_loader": loader(16, seed=1),
        "val_loader": loader(16, seed=2),
        "inference_time": 0.05,  # seconds for one batch of batch_size
        "memory_usage": 900.0,  # MB
    }


def test_the_document_has_the_eleven_python_blocks():
    assert [heading for heading, _, _ in design_blocks("python")] == PYTHON_BLOCK_HEADINGS


def test_every_python_block_runs_as_written_in_order(capsys):
    ns = reader_namespace()
    shortest = int(min(ns["seq_lengths"]))
    for heading, line, source in design_blocks("python"):
        try:
            exec(compile(source, f"{DOC.name}:{line}", "exec"), ns)  # the document's own code, as written
        except Exception as exc:
            pytest.fail(f"block {heading!r} (line {line}) failed: {type(exc).__name__}: {exc}")

    # what the blocks say they do
    assert isinstance(ns["predictions"], np.ndarray) and ns["predictions"].shape == (32,)  # Basic Usage
    assert ns["stats"]["min_length"] == shortest  # Dataset Handling
    assert ns["lstm_outputs"].shape == (8, 300, 128)  # Interpretability: bidirectional, hidden 64
    assert ns["attention_weights"].shape == (8, 300)
    assert ns["model"].hidden_size == 128 and ns["model"].num_layers == 3  # Advanced Configuration
    summary = ns["summary"]  # Performance Monitoring
    assert summary["latest_training_metrics"]["epoch"] == 1
    assert summary["avg_inference_time_per_sample"] == pytest.approx(0.05 / 8)
    assert summary["peak_memory_usage_mb"] == 900.0
    printed = capsys.readouterr().out
    assert "Meets inference target: True" in printed and "Meets memory target: True" in printed


def test_variable_length_block_reads_the_trailing_ellipsis_as_full_length_rows():
    torch.manual_seed(0)
    model = SteelDefectLSTM(create_default_lstm_config()).eval()
    x = np.random.default_rng(0).normal(size=(6, 50, 5)).astype(np.float32)
    torch.testing.assert_close(model(x, [20, 30, ...]), model(x, [20, 30, 50, 50, 50, 50]))
    torch.testing.assert_close(model(x, (20, 30, 10, 5, 1, 50, ...)), model(x, [20, 30, 10, 5, 1, 50]))
    for bad in ([..., 20], [20, ..., 30], [1] * 7 + [...]):
        with pytest.raises(ValueError):
            model(x, bad)


def test_configuration_schema_block_is_create_default_lstm_config():
    [(_, _, source)] = design_blocks("yaml")
    schema = yaml.safe_load(source)["lstm_model"]
    default = create_default_lstm_config()
    for section, values in schema.items():
        for key, value in values.items():
            assert default[section][key] == value, f"{section}.{key}"
    assert default["architecture"]["hidden_size"] == 64 and default["training"]["num_epochs"] == 100
    assert default["data_processing"]["sequence_length"] == 300


def test_the_product_config_is_not_the_design_default():
    product = load_lstm_config(PRODUCT_CONFIG).to_dict()
    assert product["architecture"]["hidden_size"] == 32 and product["architecture"]["num_layers"] == 1
    assert product != create_default_lstm_config()


def test_testing_block_names_existing_test_classes():
    import tests.test_lstm_model as original_tests

    [(_, _, source)] = design_blocks("bash")
    for name in re.findall(r"::(\w+)", source):
        assert hasattr(original_tests, name), name


class TestForward:
    def test_array_input_gives_logits_outside_autograd(self):
        model = SteelDefectLSTM(create_default_lstm_config())  # train mode, as freshly built
        x = np.random.default_rng(0).normal(size=(4, 20, 5))
        out = model.forward(x)
        assert out.shape == (4,) and not out.requires_grad
        assert out.numpy().shape == (4,)
        assert model.forward(x.tolist()).requires_grad is False

    def test_tensor_input_keeps_gradients(self):
        model = SteelDefectLSTM(create_default_lstm_config())
        out = model(torch.randn(4, 20, 5), [20, 15, 10, 5])
        assert out.requires_grad
        out.sum().backward()
        assert all(p.grad is not None for p in model.lstm.parameters())


class TestModelAttributesAndInfo:
    def test_settings_as_attributes(self):
        model = SteelDefectLSTM(create_default_lstm_config())
        assert (model.hidden_size, model.num_layers, model.bidirectional, model.dropout) == (64, 2, True, 0.2)
        assert model.use_batch_norm is True and model.use_layer_norm is False and model.use_input_norm is True
        config = create_default_lstm_config()
        config["normalization"].update(batch_norm=False, layer_norm=True)
        config["architecture"].update(hidden_size=32, num_layers=1, bidirectional=False, dropout=0.0)
        other = SteelDefectLSTM(config)
        assert (other.hidden_size, other.num_layers, other.bidirectional, other.dropout) == (32, 1, False, 0.0)
        assert other.use_batch_norm is False and other.use_layer_norm is True
        assert isinstance(other.norm, torch.nn.LayerNorm)

    def test_layer_norm_attribute_says_what_runs_when_both_are_set(self):
        config = create_default_lstm_config()
        config["normalization"].update(batch_norm=True, layer_norm=True)
        model = SteelDefectLSTM(config)
        assert model.use_batch_norm and not model.use_layer_norm and isinstance(model.norm, torch.nn.BatchNorm1d)

    def test_get_model_info(self):
        model = SteelDefectLSTM(create_default_lstm_config())
        info = model.get_model_info()
        assert info["total_parameters"] == model.count_parameters() > 0
        assert info["trainable_parameters"] == info["total_parameters"]
        assert info["model_size_mb"] == pytest.approx(model.model_size_mb())
        assert info["architecture"]["hidden_size"] == 64 and info["architecture"]["classifier_dims"] == [32, 16]
        assert info["regularization"] == {"dropout": 0.2, "classifier_dropout": 0.3, "weight_decay": 1e-4,
                                          "gradient_clip": 1.0}  # fmt: skip
        assert info["normalization"] == {"batch_norm": True, "layer_norm": False, "input_norm": True}
        assert info["config"] == create_default_lstm_config()
        model.freeze_layers(["lstm"])
        frozen = sum(p.numel() for p in model.lstm.parameters())
        assert model.get_model_info()["trainable_parameters"] == info["total_parameters"] - frozen


class TestFreezeLayers:
    @staticmethod
    def trainable(model: SteelDefectLSTM) -> dict[str, bool]:
        return {name: all(p.requires_grad for p in getattr(model, name).parameters())
                for name in ("lstm", "attention", "classifier")}  # fmt: skip

    def test_keyword_form(self):
        model = SteelDefectLSTM(create_default_lstm_config())
        assert model.freeze_layers(freeze_lstm=True, freeze_classifier=False) == ["lstm"]
        assert self.trainable(model) == {"lstm": False, "attention": True, "classifier": True}
        assert model.freeze_layers(freeze_lstm=False, freeze_classifier=True) == ["classifier"]
        assert self.trainable(model) == {"lstm": False, "attention": True, "classifier": False}  # False: left as is

    def test_keyword_defaults_freeze_the_encoder_with_its_conv_front_end(self):
        config = create_default_lstm_config()
        config["architecture"]["conv_channels"] = 8
        model = SteelDefectLSTM(config)
        assert model.freeze_layers() == ["conv", "lstm"]
        assert not any(p.requires_grad for p in model.conv.parameters())

    def test_list_form_unchanged_and_forms_do_not_mix(self):
        model = SteelDefectLSTM(create_default_lstm_config())
        assert model.freeze_layers(["lstm", "classifier"]) == ["lstm", "classifier"]
        with pytest.raises(TypeError, match="not both"):
            model.freeze_layers(["lstm"], freeze_classifier=True)
        with pytest.raises(TypeError, match="list of names"):
            model.freeze_layers("lstm")


def test_sigmoid_classifier_activation():
    config = create_default_lstm_config()
    config["classifier"]["activation"] = "sigmoid"
    model = SteelDefectLSTM(config).eval()
    assert any(isinstance(m, torch.nn.Sigmoid) for m in model.classifier)
    assert model(np.zeros((2, 10, 5), np.float32)).shape == (2,)
    config["classifier"]["activation"] = "softplus"
    with pytest.raises(ConfigError, match="classifier.activation"):
        SteelDefectLSTM(config)


class TestTrackerSummary:
    def test_original_keys(self):
        tracker = LSTMPerformanceTracker()
        empty = tracker.get_performance_summary()
        for key in ("latest_training_metrics", "latest_validation_metrics", "avg_inference_time_per_sample",
                    "peak_memory_usage_mb", "meets_auc_target", "meets_inference_target", "meets_memory_target"):
            assert key in empty and empty[key] is None, key  # fmt: skip
        tracker.log_training_metrics(0, {"loss": 0.5, "auc_roc": 0.85})
        tracker.log_training_metrics(1, {"loss": 0.4, "auc_roc": 0.87})
        tracker.log_validation_metrics(1, {"loss": 0.6, "auc_roc": 0.90})
        tracker.log_inference_time(batch_size=32, inference_time=0.1)
        tracker.log_inference_time(batch_size=1, inference_time=0.1)
        tracker.log_memory_usage(memory_mb=1024)
        tracker.log_memory_usage(memory_mb=2048)
        summary = tracker.get_performance_summary()
        assert summary["latest_training_metrics"] == {"epoch": 1, "loss": 0.4, "auc_roc": 0.87}
        assert summary["latest_validation_metrics"] == {"epoch": 1, "loss": 0.6, "auc_roc": 0.90}
        assert summary["avg_inference_time_per_sample"] == pytest.approx((0.1 / 32 + 0.1) / 2)  # seconds
        assert summary["peak_memory_usage_mb"] == 2048
        assert summary["meets_auc_target"] is True and summary["meets_memory_target"] is True

    def test_latest_metrics_are_copies(self):
        tracker = LSTMPerformanceTracker()
        tracker.log_training_metrics(0, {"loss": 0.5})
        tracker.get_performance_summary()["latest_training_metrics"]["loss"] = 9.0
        assert tracker.get_performance_summary()["latest_training_metrics"]["loss"] == 0.5


class TestDatasetItems:
    def test_pair_items_are_padded_tensors_for_the_default_collate(self):
        seqs = [np.full((n, 5), n, np.float32) for n in (3, 7, 5)]
        ds = CastingSequenceDataset(seqs, [0, 1, 0], item_format="pair")
        x, y = ds[0]
        assert x.dtype == torch.float32 and x.shape == (7, 5) and y.dtype == torch.float32
        assert torch.all(x[:3] == 3) and torch.all(x[3:] == 0)  # zero padding after the valid steps
        xb, yb = next(iter(DataLoader(ds, batch_size=3)))
        assert xb.shape == (3, 7, 5) and yb.tolist() == [0.0, 1.0, 0.0]
        assert ds.lengths.tolist() == [3, 7, 5]

    def test_original_constructor_with_padded_array_and_lengths(self):
        padded = np.random.default_rng(0).normal(size=(4, 12, 5)).astype(np.float32)
        ds = CastingSequenceDataset(sequences=padded, labels=[0, 1, 1, 0], sequence_lengths=[12, 4, 8, 12],
                                    item_format="pair")  # fmt: skip
        x, y = ds[1]
        assert x.shape == (12, 5) and torch.all(x[4:] == 0) and float(y) == 1.0
        np.testing.assert_array_equal(x[:4].numpy(), padded[1, :4])
        assert ds.get_sequence_stats()["mean_length"] == pytest.approx(9.0)

    def test_default_items_are_what_the_project_collates(self):
        ds = CastingSequenceDataset([np.ones((3, 5)), np.ones((6, 5))], [1, 0])
        seq, length, label = ds[0]
        assert seq.shape == (3, 5) and length == 3 and label == 1
        x, lengths, y = collate_padded([ds[0], ds[1]])
        assert x.shape == (2, 6, 5) and lengths.tolist() == [3, 6]

    def test_unknown_item_format_rejected(self):
        with pytest.raises(ValueError, match="item_format"):
            CastingSequenceDataset([np.ones((3, 5))], [0], item_format="tuple")  # type: ignore[arg-type]
