"""Errors raised on purpose by the streaming service and the model: one tree, one root.

    StreamAppError (= models.errors.CastingDefectError)
    ├── ConfigError        invalid configuration, service or model (names the bad key; `keys`: dotted paths);
    │   │                  also a ValueError; = models.errors.ConfigError = models.config.ConfigError
    │   └── ConnectionSettingsError  Kafka or Redis answered but refused the client settings (credentials,
    │                      certificate, TLS or not): never retried as an outage; names the setting
    ├── DevstackError      the local Kafka/Redis stack could not be started or stopped
    ├── ModelLoadError     the checkpoint is missing or unreadable
    │   └── CheckpointMismatchError  it was trained on other channels (or another input size / head) than
    │                                the config names
    ├── ReplayError        a replay could not start (bad time, missing topic)
    ├── SimulationError    the simulator cannot produce what was asked (a dataset with other channels)
    └── RejectedInput      a message or window that goes to the dead-letter topic (carries `reason`)

The root and `ConfigError` are defined in ``models/errors.py`` because the model package, which never
imports ``stream_app``, raises `ConfigError` too; ``stream-app`` catches the root and exits with status 2.

Bad input is never raised past an agent: it becomes a dead-letter record. Infrastructure errors
(Kafka, Redis) propagate.
"""

from __future__ import annotations

from models.errors import CastingDefectError, ConfigError

__all__ = [
    "CheckpointMismatchError",
    "ConfigError",
    "ConnectionSettingsError",
    "DevstackError",
    "ModelLoadError",
    "RejectedInput",
    "ReplayError",
    "SimulationError",
    "StreamAppError",
]

StreamAppError = CastingDefectError
"""Base class of every error this package raises on purpose (the project's root error)."""


class ConnectionSettingsError(ConfigError):
    """Kafka or Redis answered but refused this process's connection settings: wrong credentials, a
    certificate the configured CA did not sign, a plaintext client on a TLS port (or the reverse).
    Retrying cannot help, so it is not an outage; the message names the setting (`keys`)."""


class DevstackError(StreamAppError):
    """The local development stack could not do what was asked."""


class ModelLoadError(StreamAppError):
    """The model checkpoint could not be loaded."""


class CheckpointMismatchError(ModelLoadError):
    """The checkpoint does not fit the configured channel set (names, order, count) or the service."""


class SimulationError(StreamAppError):
    """The simulator cannot produce what was asked."""


class ReplayError(StreamAppError):
    """The replay could not start (bad time, missing topic)."""


class RejectedInput(StreamAppError):  # noqa: N818 - it is a verdict on input, not a failure of ours
    """A message or window rejected with a reason from the dead-letter vocabulary."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
