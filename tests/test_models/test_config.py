"""The one config machinery (models.settings): the service config and the model config load, override from
the environment and fail the same way, with one ConfigError class."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import models.config
import models.errors
import stream_app.errors
from models.config import LSTMConfig, load_lstm_config
from models.settings import env_overrides
from stream_app.config import StreamConfig, load_config

ROOT = Path(__file__).resolve().parents[2]


def load_stream(path=None, env=None):
    return load_config(path, environ=env or {})


def load_lstm(path=None, env=None):
    return load_lstm_config(path, env=env or {})


# (loader, env prefix, root model): the two configs, so every test below runs against both
SERVICE = pytest.param(load_stream, "STREAM_APP__", StreamConfig, id="service")
MODEL = pytest.param(load_lstm, "LSTM__", LSTMConfig, id="model")
BOTH = pytest.mark.parametrize(("load", "prefix", "root"), [SERVICE, MODEL])

# per config: an int key with its section, a list-of-int-or-str key, and what "1, 2," and "[3]" read as
INT_KEY = {"STREAM_APP__": ("batching", "max_batch_size"), "LSTM__": ("training", "batch_size")}
LIST_KEY = {"STREAM_APP__": ("kafka", "bootstrap_servers"), "LSTM__": ("classifier", "hidden_dims")}
LIST_TEXT = {"STREAM_APP__": ("b1:9092, b2:9092,", ["b1:9092", "b2:9092"], "[b3:9092]", ["b3:9092"]),
             "LSTM__": ("32, 16,", [32, 16], "[8]", [8])}


def var(prefix: str, section: str, key: str) -> str:
    return f"{prefix}{section.upper()}__{key.upper()}"


def lower_var(prefix: str, section: str, key: str) -> str:
    return f"{prefix}{section}__{key}"


def read(cfg, section: str, key: str):
    return getattr(getattr(cfg, section), key)


def test_one_config_error_class():
    assert models.config.ConfigError is stream_app.errors.ConfigError is models.errors.ConfigError
    assert issubclass(stream_app.errors.ConfigError, stream_app.errors.StreamAppError)
    assert issubclass(stream_app.errors.ConfigError, ValueError)  # models' callers caught ValueError
    err = stream_app.errors.ConfigError("invalid configuration:\n  a.b: nope", ["a.b"])
    assert err.keys == ["a.b"] and stream_app.errors.ConfigError("no keys").keys == []


def test_the_error_tree_has_one_root():
    from stream_app.runtime.replay import ReplayError

    assert ReplayError is stream_app.errors.ReplayError
    for name in ("ConfigError", "DevstackError", "ModelLoadError", "ReplayError", "RejectedInput"):
        assert issubclass(getattr(stream_app.errors, name), stream_app.errors.StreamAppError), name
    assert stream_app.errors.StreamAppError is models.errors.CastingDefectError


def test_models_config_imports_no_stream_app():
    code = ("import sys, models.config, models.settings, models.errors; "
            "sys.exit(any(m.split('.')[0] == 'stream_app' for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@BOTH
@pytest.mark.parametrize("unknown", ["section", "key"])
def test_unknown_key_in_the_environment_is_named_by_its_dotted_path(load, prefix, root, unknown):
    section, key = INT_KEY[prefix]
    name, dotted = (f"{prefix}NOPE", "nope") if unknown == "section" else (var(prefix, section, "nope"),
                                                                          f"{section}.nope")
    with pytest.raises(stream_app.errors.ConfigError) as caught:
        load(env={name: "1"})
    assert f"  {dotted}: Extra inputs are not permitted" in str(caught.value)
    assert str(caught.value).startswith("invalid ") and caught.value.keys == [dotted]


@BOTH
def test_unknown_key_in_the_file_is_named_by_its_dotted_path(load, prefix, root, tmp_path):
    section, _ = INT_KEY[prefix]
    path = tmp_path / "config.yaml"
    path.write_text(f"{section}:\n  colour: blue\n")
    with pytest.raises(models.config.ConfigError) as caught:
        load(path)
    assert f"  {section}.colour: Extra inputs are not permitted" in str(caught.value)
    assert caught.value.keys == [f"{section}.colour"]


@BOTH
def test_invalid_value_from_the_environment_names_the_key(load, prefix, root):
    section, key = INT_KEY[prefix]
    with pytest.raises(stream_app.errors.ConfigError) as caught:
        load(env={var(prefix, section, key): "lots"})
    assert f"  {section}.{key}: " in str(caught.value) and caught.value.keys == [f"{section}.{key}"]


@BOTH
def test_text_is_converted_by_the_keys_type(load, prefix, root):
    section, key = INT_KEY[prefix]
    assert read(load(env={var(prefix, section, key): "16"}), section, key) == 16
    assert read(load(env={lower_var(prefix, section, key): "17"}), section, key) == 17  # the path in any case


@BOTH
def test_list_key_reads_comma_separated_text_or_yaml(load, prefix, root):
    section, key = LIST_KEY[prefix]
    comma, comma_value, flow, flow_value = LIST_TEXT[prefix]
    assert read(load(env={var(prefix, section, key): comma}), section, key) == comma_value
    assert read(load(env={var(prefix, section, key): flow}), section, key) == flow_value


@BOTH
def test_environment_wins_over_the_file_and_keeps_siblings(load, prefix, root, tmp_path):
    section, key = INT_KEY[prefix]
    list_section, list_key = LIST_KEY[prefix]
    _, _, flow, flow_value = LIST_TEXT[prefix]
    path = tmp_path / "config.yaml"
    path.write_text(f"{section}:\n  {key}: 3\n{list_section}:\n  {list_key}: {flow}\n")
    cfg = load(path, env={var(prefix, section, key): "5"})
    assert read(cfg, section, key) == 5 and read(cfg, list_section, list_key) == flow_value
    assert read(load(path), section, key) == 3


@BOTH
def test_empty_value_sets_none(load, prefix, root):
    section, key = INT_KEY[prefix]
    assert env_overrides({var(prefix, section, key): ""}, prefix, root) == {section: {key: None}}
    with pytest.raises(stream_app.errors.ConfigError, match=rf"  {section}\.{key}: "):
        load(env={var(prefix, section, key): ""})  # not optional: None is invalid


@BOTH
def test_other_variables_are_ignored(load, prefix, root):
    section, key = INT_KEY[prefix]
    other = {"PATH": "/bin", key.upper(): "1", var(prefix.rstrip("_") + "_", section, key): "2"}
    assert load(env=other) == load(env={})


@BOTH
def test_empty_path_segment_names_the_variable(load, prefix, root):
    name = f"{prefix}{INT_KEY[prefix][0].upper()}____X"
    with pytest.raises(stream_app.errors.ConfigError, match=name):
        load(env={name: "1"})


@BOTH
def test_value_and_section_at_once_is_an_error(load, prefix, root):
    section, key = INT_KEY[prefix]
    with pytest.raises(stream_app.errors.ConfigError, match=f"{section} is set as a value"):
        load(env={f"{prefix}{section.upper()}": "1", var(prefix, section, key): "2"})
    with pytest.raises(stream_app.errors.ConfigError, match="set by another variable too"):
        load(env={var(prefix, section, key): "1", lower_var(prefix, section, key): "2"})


@BOTH
def test_bad_yaml_value_names_the_variable_not_the_value(load, prefix, root):
    section, key = LIST_KEY[prefix]
    secretish = "[unclosed-s3cret"
    with pytest.raises(stream_app.errors.ConfigError) as caught:
        load(env={var(prefix, section, key): secretish})
    assert var(prefix, section, key) in str(caught.value) and "s3cret" not in str(caught.value)
    assert caught.value.keys == [f"{section}.{key}"]


@BOTH
@pytest.mark.parametrize(
    ("text", "message"),
    [(None, "config file not found"), ("key: [unclosed\n", "is not valid YAML"), ("- a\n- b\n", "must hold a mapping")],
)
def test_file_errors_are_the_same(load, prefix, root, tmp_path, text, message):
    path = tmp_path / "config.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(stream_app.errors.ConfigError, match=message) as caught:
        load(path)
    assert str(path) in str(caught.value)


def test_keyword_overrides_win_over_environment():
    cfg = load_config(environ={"STREAM_APP__BATCHING__MAX_BATCH_SIZE": "128"}, batching={"max_batch_size": 8})
    assert cfg.batching.max_batch_size == 8


def test_model_defaults_never_read_the_environment(monkeypatch):
    """The model package reads LSTM__* only when the caller passes an environment: a default or a checkpoint's
    stored config is the same in every shell."""
    monkeypatch.setenv("LSTM__TRAINING__NUM_EPOCHS", "3")
    assert LSTMConfig().training.num_epochs == 100
    assert models.config.validate_lstm_config({}).training.num_epochs == 100
    assert load_lstm_config(None).training.num_epochs == 100
    assert load_lstm_config(None, env=os.environ).training.num_epochs == 3


def test_lstm_file_may_wrap_the_schema_in_lstm_model(tmp_path):
    bare, wrapped = tmp_path / "bare.yaml", tmp_path / "wrapped.yaml"
    bare.write_text("training:\n  num_epochs: 4\n")
    wrapped.write_text("lstm_model:\n  training:\n    num_epochs: 4\n")
    assert load_lstm_config(bare) == load_lstm_config(wrapped) != LSTMConfig()


def test_apply_env_overrides_uses_the_same_rules():
    raw = {"classifier": {"hidden_dims": [1]}, "training": {"batch_size": 8}}
    out = models.config.apply_env_overrides(raw, {"LSTM__CLASSIFIER__HIDDEN_DIMS": "4,2"})
    assert out == {"classifier": {"hidden_dims": ["4", "2"]}, "training": {"batch_size": 8}}
    assert raw["classifier"]["hidden_dims"] == [1]  # the input is not changed
