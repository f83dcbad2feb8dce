"""The root of the project's error tree and `ConfigError`, shared by the model and the service.

They live here, on the model side, because ``models`` never imports ``stream_app`` (the model package works
without Kafka or Redis) while ``stream_app`` builds on ``models``. The whole tree is drawn in
``stream_app/errors.py``; ``stream_app.errors.StreamAppError`` is `CastingDefectError`.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["CastingDefectError", "ConfigError", "DatasetError"]


class CastingDefectError(Exception):
    """Base class of every error this project (model or service) raises on purpose."""


class ConfigError(CastingDefectError, ValueError):
    """A configuration (service or model) is invalid. The message names the key; ``keys`` holds the dotted
    paths of the offending keys (empty when the problem is not one key's, e.g. an unreadable file)."""

    def __init__(self, message: str, keys: Iterable[str] = ()) -> None:
        super().__init__(message)
        self.keys = list(keys)


class DatasetError(CastingDefectError, ValueError):
    """A dataset file (readings or labels) is unusable. The message names the file and the row or casting."""
