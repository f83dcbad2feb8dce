"""Optional dependencies: the worker installs without the training and simulation stacks.

`require_extra` turns a missing optional package into one clear error naming the extra to install,
instead of an ImportError from deep inside a command.
"""

from __future__ import annotations

import importlib.util

from stream_app.errors import StreamAppError

#: extra -> the import names it provides (pyproject.toml, [project.optional-dependencies])
EXTRAS: dict[str, tuple[str, ...]] = {
    "simulate": ("scipy",),  # the synthetic casting generator (simulate, demo, chaos)
    "train": ("sklearn", "scipy", "matplotlib", "pyarrow"),  # train, evaluate, plots, baseline, dataset files
    "uea": ("sktime",),
}


class MissingExtraError(StreamAppError):
    """A command needs an optional dependency that is not installed."""


def require_extra(extra: str, command: str) -> None:
    missing = [name for name in EXTRAS[extra] if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(
            f"`stream-app {command}` needs the '{extra}' extra ({', '.join(missing)} not installed): "
            f"pip install 'casting-defect-stream[{extra}]' (in this repository: .venv/bin/pip install -e '.[{extra}]')"
        )
