"""Validated configuration of the LSTM model (the schema of the original design).

One pydantic model per section, ``extra="forbid"`` everywhere, so a misspelt or unknown key fails
with its dotted path (``architecture.hidden_size``). ``load_lstm_config`` reads a YAML file (either
with or without the top-level ``lstm_model:`` key) and validates it.

The defaults are the original design's schema values (``LSTMConfig()`` == ``create_default_lstm_config()``).
The product's tuned configuration, the one ``checkpoints/default`` was trained with, is the file
``PRODUCT_CONFIG`` (``configs/lstm.yaml``), which names every key and so depends on no default here.

Loading, environment overrides (``LSTM__SECTION__KEY=value``) and error messages are the shared machinery of
``models.settings``, the same as the service config's; `ConfigError` is ``models.errors.ConfigError``, the one
class ``stream_app.errors`` exports too.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from models.errors import ConfigError
from models.settings import ROOT_KEY, build_config, env_overrides, merge, read_yaml_mapping, validate

__all__ = [
    "ArchitectureConfig",
    "ClassifierConfig",
    "ConfigError",
    "DataProcessingConfig",
    "PRODUCT_CONFIG",
    "LSTMConfig",
    "NormalizationConfig",
    "RegularizationConfig",
    "TrainingConfig",
    "apply_env_overrides",
    "load_lstm_config",
    "validate_lstm_config",
]

HIDDEN_SIZES = (32, 64, 128, 256)
PRODUCT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "lstm.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ArchitectureConfig(_Section):
    input_size: int = Field(5, ge=1)
    hidden_size: int = 64
    num_layers: int = Field(2, ge=1, le=4)
    bidirectional: bool = True
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    attention_dim: int = Field(32, ge=1)
    conv_channels: int = Field(0, ge=0)  # 0: no convolutional front-end
    conv_kernel: int = Field(5, ge=1)
    conv_layers: int = Field(1, ge=1, le=4)  # stacked Conv1d+ReLU blocks (used only with conv_channels > 0)

    @field_validator("conv_kernel")
    @classmethod
    def _odd_kernel(cls, value: int) -> int:
        if value % 2 == 0:
            raise ValueError(f"must be odd (centred window), got {value}")
        return value

    @field_validator("hidden_size")
    @classmethod
    def _hidden_size_allowed(cls, value: int) -> int:
        if value not in HIDDEN_SIZES:
            raise ValueError(f"must be one of {HIDDEN_SIZES}, got {value}")
        return value


class ClassifierConfig(_Section):
    hidden_dims: list[int] = Field(default_factory=lambda: [32, 16])
    activation: Literal["relu", "gelu", "tanh", "leaky_relu", "elu", "sigmoid"] = "relu"
    dropout: float = Field(0.3, ge=0.0, lt=1.0)
    num_classes: int = Field(1, ge=1)

    @field_validator("hidden_dims")
    @classmethod
    def _positive_dims(cls, value: list[int]) -> list[int]:
        if any(d < 1 for d in value):
            raise ValueError(f"every hidden dim must be >= 1, got {value}")
        return value


class NormalizationConfig(_Section):
    batch_norm: bool = True
    layer_norm: bool = False
    input_norm: bool = True


class RegularizationConfig(_Section):
    weight_decay: float = Field(1e-4, ge=0.0)
    gradient_clip: float = Field(1.0, gt=0.0)


class TrainingConfig(_Section):
    batch_size: int = Field(32, ge=1)
    learning_rate: float = Field(1e-3, gt=0.0)
    num_epochs: int = Field(100, ge=1)
    early_stopping_patience: int = Field(15, ge=1)
    lr_schedule: Literal["plateau", "cosine", "none"] = "plateau"
    class_weighting: bool = True


class DataProcessingConfig(_Section):
    sequence_length: int = Field(300, ge=1)
    normalization: Literal["z_score", "none"] = "z_score"
    padding: Literal["zero"] = "zero"


class LSTMConfig(_Section):
    architecture: ArchitectureConfig = Field(default_factory=ArchitectureConfig)
    classifier: ClassifierConfig = Field(default_factory=ClassifierConfig)
    normalization: NormalizationConfig = Field(default_factory=NormalizationConfig)
    regularization: RegularizationConfig = Field(default_factory=RegularizationConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    data_processing: DataProcessingConfig = Field(default_factory=DataProcessingConfig)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="python")


WHAT = "LSTM configuration"  # errors read "invalid LSTM configuration:" then one "  key: message" line per key
ENV_PREFIX = "LSTM__"


def validate_lstm_config(config: LSTMConfig | dict[str, Any] | None) -> LSTMConfig:
    """Return a validated ``LSTMConfig``; missing sections and keys take their defaults."""
    if config is None:
        return LSTMConfig()
    if isinstance(config, LSTMConfig):
        return config.model_copy(deep=True)
    if not isinstance(config, dict):
        raise ConfigError(f"config must be a mapping, got {type(config).__name__}", [ROOT_KEY])
    if set(config) == {"lstm_model"}:
        config = config["lstm_model"]
    return validate(LSTMConfig, config, WHAT)


def apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``LSTM__SECTION__KEY=value`` variables on a raw config (rules: ``models.settings``)."""
    return merge(copy.deepcopy(raw), env_overrides(env, ENV_PREFIX, LSTMConfig))


def load_lstm_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> LSTMConfig:
    """Read a YAML file holding the ``lstm_model`` schema, overlay ``env`` overrides, validate.

    ``path=None`` starts from the defaults. The caller passes ``env`` (e.g. ``os.environ``): the model
    package never reads the environment on its own.
    """
    raw = read_yaml_mapping(path, unwrap="lstm_model") if path is not None else {}
    return build_config(LSTMConfig, raw, env_prefix=ENV_PREFIX, environ=env or {}, what=WHAT)
