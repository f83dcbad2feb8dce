"""One progress bar for long command-line jobs (simulate, replay): rich, or nothing when disabled."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

Advance = Callable[..., None]


@contextmanager
def progress_bar(label: str, total: int, unit: str, enabled: bool = True, **fields: Any):
    """Yields advance(n, **fields): moves the bar by n `unit`s and updates the extra text fields.

    Extra fields are shown after the count, e.g. fields={"castings": 0}; a `rate` of `unit`/s is added.
    """
    if not enabled:
        yield lambda n, **_: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    extra = " · ".join(f"{{task.fields[{name}]:,}} {name}" for name in fields)
    columns = [TextColumn(label), BarColumn(), TextColumn(f"{{task.completed:,}}/{{task.total:,}} {unit}")]
    if extra:
        columns.append(TextColumn(extra))
    columns += [TextColumn("{task.fields[rate]:,.0f} " + unit + "/s"), TimeRemainingColumn()]
    progress = Progress(*columns)
    task = progress.add_task(label, total=total, rate=0.0, **fields)
    began = time.monotonic()
    done = 0

    def advance(n: int, **values: Any) -> None:
        nonlocal done
        done += n
        progress.update(task, advance=n, rate=done / max(1e-9, time.monotonic() - began), **values)

    progress.start()
    try:
        yield advance
    finally:
        progress.stop()


class ReplayProgress:
    """The replay's `on_progress(done, total, summary)`: a bar started at the first call (when the total
    is known), stopped by `close()`."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar = None
        self._advance: Advance | None = None
        self._done = 0

    def __call__(self, done: int, total: int, summary: Any) -> None:
        if not self.enabled:
            return
        if self._advance is None:
            self._bar = progress_bar("replay", total, "records", readings=0, castings=0)
            self._advance = self._bar.__enter__()
        self._advance(done - self._done, readings=summary.readings, castings=summary.castings_scored)
        self._done = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


class ReadProgress:
    """`on_read(done, total)` of a bounded read (the dataset builder): a bar started at the first call."""

    def __init__(self, label: str, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled
        self._bar = None
        self._advance: Advance | None = None
        self._done = 0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self._advance is None:
            self._bar = progress_bar(self.label, total, "records")
            self._advance = self._bar.__enter__()
        self._advance(done - self._done)
        self._done = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
