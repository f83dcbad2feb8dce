"""Live model swap: the worker watches the checkpoint file and serves a new model between batches.

Every `model.watch_interval_s` the worker compares the file's (size, mtime, inode) with what it loaded.
On a change it loads the new file in a thread, beside the model that keeps serving, and checks it like
a start-up checkpoint (readable, binary head, trained on `validation.channels` in order). Only a model
that loaded and fits is handed to the scoring stage, in one assignment on the event loop: a batch takes
the model once, when its forward starts, so no casting meets a half-loaded model and every prediction
carries the version of the model that scored it. A refused file is logged and counted; the old model
keeps serving, and the file is tried again when it changes again.

Write a new checkpoint beside the old one and rename it over (`save_checkpoint` and `stream-app train`
do); a copy in place may be seen half-written, is refused as corrupt, and is read again once complete.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from stream_app.config import StreamConfig
from stream_app.errors import ModelLoadError
from stream_app.runtime.metrics import Metrics
from stream_app.service.model_runner import Scorer, load_scorer
from stream_app.service.scoring_stage import ScoringStage

log = logging.getLogger(__name__)

FileSignature = tuple[int, int, int] | None


def file_signature(path: Path) -> FileSignature:
    """What changes when the file is replaced or rewritten; None while it is missing."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_size, stat.st_mtime_ns, stat.st_ino


class ModelWatcher:
    def __init__(
        self,
        cfg: StreamConfig,
        scoring: ScoringStage,
        metrics: Metrics,
        load: Callable[[], Scorer] | None = None,
        signature: FileSignature = None,
    ) -> None:
        """`signature`: of the file the serving model came from, taken before loading it (None: now), so a
        file replaced while the worker started is still seen as new."""
        self.cfg = cfg
        self.path = Path(cfg.model.checkpoint)
        self.scoring = scoring
        self.metrics = metrics
        self.load = load or (lambda: load_scorer(cfg.model, cfg.validation.channels, self.path))
        self.signature = signature if signature is not None else file_signature(self.path)
        metrics.set_model(scoring.scorer.version)

    async def check(self) -> str:
        """Look at the file once; returns what happened: unchanged, missing, same-version, swapped, refused."""
        signature = file_signature(self.path)
        if signature == self.signature:
            return "unchanged"
        self.signature = signature  # a refused file is tried again only once it changes again
        if signature is None:
            log.warning("checkpoint %s is gone; model %s keeps serving", self.path, self.scoring.scorer.version)
            return "missing"
        try:
            candidate = await asyncio.to_thread(self.load)
        except ModelLoadError as exc:
            log.error("refused new checkpoint %s, model %s keeps serving: %s", self.path,
                      self.scoring.scorer.version, exc)
            self.metrics.model_swaps.labels("refused").inc()
            return "refused"
        except Exception:  # a file no check foresaw must not stop the serving model either; say what happened
            log.exception("refused new checkpoint %s (unexpected error loading it), model %s keeps serving",
                          self.path, self.scoring.scorer.version)
            self.metrics.model_swaps.labels("refused").inc()
            return "refused"
        current = self.scoring.scorer.version
        if candidate.version == current:
            log.info("checkpoint %s rewritten with the serving weights (%s); nothing to swap", self.path, current)
            return "same-version"
        self.scoring.swap(candidate, candidate.threshold(self.cfg.model.threshold))
        self.metrics.model_swaps.labels("swapped").inc()
        self.metrics.set_model(candidate.version)
        log.info("swapped model %s -> %s (from %s); the next batch is scored by the new one", current,
                 candidate.version, self.path)
        return "swapped"
