"""The one config machinery of the project: the service's (`stream_app.config`) and the model's (`models.config`).

A config is a tree of pydantic models with ``extra="forbid"``. Both are loaded the same way (`build_config`),
later layers winning key by key, sections merged rather than replaced:

1. a YAML file holding a mapping (`read_yaml_mapping`; the model's file may wrap it in ``lstm_model:``);
2. environment variables ``<PREFIX><SECTION>__<KEY>`` (`env_overrides`; ``STREAM_APP__`` for the service,
   ``LSTM__`` for the model);
3. keyword overrides (the service's ``load_config(**overrides)``);

then validated. Every failure is one `ConfigError` whose message names each bad key by its dotted path
(``batching.max_batch: Extra inputs are not permitted``) and whose ``keys`` lists those paths (`format_errors`).

Environment rules, the same for both configs:

* the name is the prefix, then the key's path with ``__`` between levels (any case; an empty segment such
  as ``A____B`` is an error); an unknown section or key fails like an unknown key in the file;
* the value is text, converted by the key's type (``128`` for an int, ``true`` for a bool); text keys,
  secrets included, keep it verbatim (``null``, ``yes`` and ``0x1F`` stay text);
* text for a list key is split on commas: ``broker-1:9092, broker-2:9092`` or ``32,16``;
* a value starting with ``[`` or ``{`` is read as YAML, for lists and mappings
  (``[{name: a, unit: u, min: 0, max: 1}]``);
* an empty value sets the key to None, which unsets an optional key.

Not pydantic-settings: a `BaseSettings` reads ``os.environ`` whenever it is built or validated, so
``LSTMConfig()``, the defaults, and a checkpoint's stored config would change with the environment;
it also ignores an unknown prefixed variable (``STREAM_APP__NOPE``), reads list values as JSON rather
than comma-separated, and cannot be given an ``environ`` mapping.
"""

from __future__ import annotations

import types
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError

from models.errors import ConfigError

__all__ = [
    "ROOT_KEY",
    "build_config",
    "env_overrides",
    "format_errors",
    "merge",
    "read_yaml_mapping",
    "split_list",
    "validate",
]

M = TypeVar("M", bound=BaseModel)
ROOT_KEY = "(root)"


def read_yaml_mapping(path: Path | str, *, unwrap: str | None = None) -> dict[str, Any]:
    """The mapping in a YAML file (an empty file is ``{}``). With `unwrap`, a file whose only top-level key
    is `unwrap` yields that key's mapping."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    data = {} if data is None else data
    if unwrap is not None and isinstance(data, dict) and set(data) == {unwrap}:
        data = data[unwrap] or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping at the top level", [ROOT_KEY])
    return data


def split_list(value: Any) -> Any:
    """``"a, b,"`` -> ``["a", "b"]``; anything but text passes unchanged."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def env_overrides(environ: Mapping[str, str], prefix: str, model: type[BaseModel]) -> dict[str, Any]:
    """The override tree of the variables named ``<prefix><KEY>__<KEY>...`` in `environ` (rules: module doc).

    `model` is the config's root class: it tells which keys are lists (comma-separated text is split).
    """
    tree: dict[str, Any] = {}
    for name in sorted(environ):
        if not name.startswith(prefix):
            continue
        path = [part.lower() for part in name[len(prefix):].split("__")]
        dotted = ".".join(path)
        if not all(path):
            raise ConfigError(f"environment variable {name}: empty path segment", [dotted])
        node = tree
        for depth, part in enumerate(path[:-1]):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                section = ".".join(path[: depth + 1])
                raise ConfigError(f"environment variable {name}: {section} is set as a value by another variable",
                                  [section])
        if path[-1] in node:
            raise ConfigError(f"environment variable {name}: {dotted} is set by another variable too", [dotted])
        node[path[-1]] = _env_value(name, dotted, environ[name])
    _split_list_keys(tree, model)
    return tree


def _env_value(name: str, dotted: str, raw: str) -> Any:
    if raw == "":
        return None
    if raw.lstrip().startswith(("[", "{")):
        try:
            return yaml.safe_load(raw)
        except yaml.YAMLError as exc:  # its text quotes the value, which may be a secret: name the problem only
            problem = getattr(exc, "problem", None) or type(exc).__name__
            raise ConfigError(f"environment variable {name}: not a valid YAML list/mapping ({problem})",
                              [dotted]) from None
    return raw


def _alternatives(annotation: Any) -> list[Any]:
    """The types an annotation admits, None left out: ``Annotated[list[str] | None, ...]`` -> ``[list[str]]``."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _alternatives(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return [alt for arg in get_args(annotation) for alt in _alternatives(arg)]
    return [] if annotation is type(None) else [annotation]


def _split_list_keys(tree: dict[str, Any], model: type[BaseModel]) -> None:
    for key, value in tree.items():
        field = model.model_fields.get(key)
        if field is None:
            continue  # unknown: validation names it
        kinds = _alternatives(field.annotation)
        if isinstance(value, dict):
            section = next((k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)), None)
            if section is not None:
                _split_list_keys(value, section)
        elif isinstance(value, str) and any((get_origin(k) or k) in (list, tuple, set, frozenset) for k in kinds):
            tree[key] = split_list(value)


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` laid over `base`: mappings merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def format_errors(exc: ValidationError, what: str = "configuration") -> ConfigError:
    """One `ConfigError` for all of a validation's errors: ``invalid <what>:`` then one ``  key: message``
    line per error (the input values are left out: they may be secrets)."""
    keys: list[str] = []
    lines: list[str] = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or ROOT_KEY
        keys.append(key)
        lines.append(f"  {key}: {err['msg']}")
    return ConfigError(f"invalid {what}:\n" + "\n".join(lines), keys)


def validate(model: type[M], data: Any, what: str = "configuration") -> M:
    """`model` validated from `data`; a `ConfigError` naming every bad key if it is not valid."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise format_errors(exc, what) from None


def build_config(
    model: type[M],
    data: Mapping[str, Any],
    *,
    env_prefix: str,
    environ: Mapping[str, str],
    overrides: Mapping[str, Any] | None = None,
    what: str = "configuration",
) -> M:
    """`data` (e.g. from `read_yaml_mapping`) with `environ`'s ``<env_prefix>*`` variables and then
    `overrides` laid over it, validated as `model`."""
    merged = merge(data, env_overrides(environ, env_prefix, model))
    if overrides:
        merged = merge(merged, overrides)
    return validate(model, merged, what)
