"""Errors raised by the streaming service.

    StreamAppError
    ├── ConfigError        invalid configuration (names the bad key)
    ├── DevstackError      the local Kafka/Redis stack could not be started or stopped
    ├── ModelLoadError     the checkpoint is missing or unreadable
    └── RejectedInput      a message or window that goes to the dead-letter topic (carries `reason`)

Bad input is never raised past an agent: it becomes a dead-letter record. Infrastructure errors
(Kafka, Redis) propagate.
"""

from __future__ import annotations


class StreamAppError(Exception):
    """Base class of every error this package raises on purpose."""


class ConfigError(StreamAppError):
    """The configuration is invalid; the message names the key."""


class DevstackError(StreamAppError):
    """The local development stack could not do what was asked."""


class ModelLoadError(StreamAppError):
    """The model checkpoint could not be loaded."""


class RejectedInput(StreamAppError):  # noqa: N818 - it is a verdict on input, not a failure of ours
    """A message or window rejected with a reason from the dead-letter vocabulary."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
