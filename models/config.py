"""Validated configuration of the LSTM model (the schema of the original design).

One pydantic model per section, ``extra="forbid"`` everywhere, so a misspelt or unknown key fails
with its dotted path (``architecture.hidden_size``). ``load_lstm_config`` reads a YAML file (either
with or without the top-level ``lstm_model:`` key) and validates it.

The defaults are the original design's schema values (``LSTMConfig()`` == ``create_default_lstm_config()``).
The product's tuned configuration, the one ``checkpoints/default`` was trained with, is the file
``PRODUCT_CONFIG`` (``configs/lstm.yaml``), which names every key and so depends on no default here.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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


class ConfigError(ValueError):
    """Invalid model configuration; ``keys`` holds the dotted paths of the offending keys."""

    def __init__(self, message: str, keys: list[str]) -> None:
        super().__init__(message)
        self.keys = keys


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


def _format_errors(exc: ValidationError) -> ConfigError:
    keys: list[str] = []
    lines: list[str] = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "<root>"
        keys.append(key)
        lines.append(f"{key}: {err['msg']}")
    return ConfigError("invalid LSTM config: " + "; ".join(lines), keys)


def validate_lstm_config(config: LSTMConfig | dict[str, Any] | None) -> LSTMConfig:
    """Return a validated ``LSTMConfig``; missing sections and keys take their defaults."""
    if config is None:
        return LSTMConfig()
    if isinstance(config, LSTMConfig):
        return config.model_copy(deep=True)
    if not isinstance(config, dict):
        raise ConfigError(f"config must be a mapping, got {type(config).__name__}", ["<root>"])
    if set(config) == {"lstm_model"}:
        config = config["lstm_model"]
    try:
        return LSTMConfig.model_validate(config)
    except ValidationError as exc:
        raise _format_errors(exc) from None


ENV_PREFIX = "LSTM__"


def apply_env_overrides(raw: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    """Overlay ``LSTM__SECTION__KEY=value`` variables (values parsed as YAML) on a raw config."""
    out = copy.deepcopy(raw)
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{name}: {'.'.join(path)} is not a section", [".".join(path)])
        node[path[-1]] = yaml.safe_load(text)
    return out


def load_lstm_config(path: str | Path | None, env: Mapping[str, str] | None = None) -> LSTMConfig:
    """Read a YAML file holding the ``lstm_model`` schema, overlay ``env`` overrides, validate.

    ``path=None`` starts from the defaults. The caller passes ``env`` (e.g. ``os.environ``).
    """
    raw: dict[str, Any] = {}
    if path is not None:
        with open(path, encoding="utf-8") as fh:
            raw = yaml.safe_load(fh) or {}
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: top level must be a mapping", ["<root>"])
        if set(raw) == {"lstm_model"}:
            raw = raw["lstm_model"] or {}
    if env:
        raw = apply_env_overrides(raw, env)
    return validate_lstm_config(raw)
