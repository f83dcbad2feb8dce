"""Build a labelled dataset file from a historical sensor topic: `stream-app dataset`.

The topic is read like a replay (`replay.read_history`: the same `--from/--until` bounds, castings begun
before `--from` left out) through the worker's own stages: `MessageParser` and `IngestStage` into a Redis
window store under the builder's own prefix, and `scoring_stage.fetch_windows` to assemble each sealed
casting's window with the configured gap filling. So a casting's window in the file is bit for bit the
window the worker scores. Labelled castings go to the readings file (`models.dataset_file.write_readings`,
long form) and their labels to a CSV beside it; the summary says what was found, joined and rejected.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stream_app.config import StreamConfig
from stream_app.runtime.connections import create_redis
from stream_app.runtime.replay import check_redis, delete_prefix, read_history
from stream_app.service.ingest_stage import IngestStage
from stream_app.service.messages import MessageParser
from stream_app.service.records import ConsumedRecord
from stream_app.service.redis_window_store import RedisWindowStore
from stream_app.service.scoring_stage import fetch_windows

log = logging.getLogger(__name__)


@dataclass
class DatasetSummary:
    records: int = 0
    readings: int = 0
    castings_found: int = 0  # sealed castings whose window assembled: what the worker would score
    labelled: int = 0  # found and labelled: written
    unlabelled: int = 0  # found, no label: left out
    labelled_rejected: int = 0  # labelled castings whose window was dead-lettered (counted under `rejected`)
    labels_without_casting: int = 0
    gaps_filled: int = 0  # steps filled in the written windows
    rejected: Counter = field(default_factory=Counter)  # dead-letter reason -> messages or castings
    started_before_from: int = 0
    open_at_stop: int = 0
    written: int = 0
    seconds: float = 0.0
    examples: dict[str, list[str]] = field(default_factory=dict)  # a few ids per kind, for the report

    def lines(self) -> list[str]:
        out = [
            f"records read                  {self.records}",
            f"readings                      {self.readings}",
            f"castings found                {self.castings_found}",
            f"  labelled (written)          {self.labelled}",
            f"  unlabelled (left out)       {self.unlabelled}{_examples(self.examples.get('unlabelled'))}",
            f"labelled but rejected         {self.labelled_rejected}"
            f"{_examples(self.examples.get('labelled_rejected'))}",
            f"labels with no casting        {self.labels_without_casting}"
            f"{_examples(self.examples.get('labels_without_casting'))}",
            f"skipped, began before --from  {self.started_before_from}",
            f"skipped, open at stop         {self.open_at_stop}",
            f"gap steps filled (written)    {self.gaps_filled}",
            f"rejected                      {sum(self.rejected.values())}",
        ]
        out += [f"  {reason:<28}{count}" for reason, count in sorted(self.rejected.items())]
        out.append(f"duration                      {self.seconds:.1f}s")
        return out


def _examples(ids: list[str] | None) -> str:
    return f"  e.g. {', '.join(ids)}" if ids else ""


def labels_path_for(readings_path: Path) -> Path:
    """Where the labels of a written dataset go by default: `<name>.labels.csv` beside the readings."""
    stem = readings_path.name.removesuffix(readings_path.suffix)
    return readings_path.with_name(f"{stem}.labels.csv")


async def collect_windows(
    cfg: StreamConfig,
    labels: dict[str, str],
    *,
    start: str = "earliest",
    until: str | None = None,
    on_read: Callable[[int, int], None] | None = None,
) -> tuple[dict[str, np.ndarray], DatasetSummary]:
    """The labelled castings' windows (casting id -> float32 (n_steps, channels)) in the bounds, and the summary.
    `cfg.app_id` must be the builder's own (its Redis prefix is deleted at the end)."""
    redis = create_redis(cfg.redis)
    await check_redis(redis)
    store = RedisWindowStore(redis, cfg.redis_prefix, cfg.redis.key_ttl_s)
    ingest = IngestStage(MessageParser(cfg.validation), store)
    n_channels = len(cfg.validation.channels)
    windows: dict[str, np.ndarray] = {}
    found: set[str] = set()
    rejected: set[str] = set()  # castings dead-lettered as a whole (end marker or window)
    summary = DatasetSummary()
    unlabelled: list[str] = []
    began = time.monotonic()

    async def handle(records: list[ConsumedRecord]) -> None:
        now = time.time()
        outcome = await ingest.process(records, now)
        summary.readings += outcome.readings
        summary.rejected.update(letter.reason for letter in outcome.deadletters)
        rejected.update(letter.casting_id for letter in outcome.deadletters if letter.casting_id)
        size = cfg.batching.max_batch_size
        for i in range(0, len(outcome.requests), size):
            batch = await fetch_windows(store, outcome.requests[i : i + size], n_channels, cfg.window, now)
            summary.rejected.update(new.reason for new in batch.new_outcomes if new.reason is not None)
            rejected.update(new.casting_id for new in batch.new_outcomes if new.reason is not None)
            for request, window, gaps in batch.to_score:
                found.add(request.casting_id)
                if request.casting_id in labels:
                    windows[request.casting_id] = window
                    summary.gaps_filled += gaps
                else:
                    unlabelled.append(request.casting_id)
            # outcomes are the worker's; the builder only frees what it read (the window is in hand)
            await store.free(batch.outcome.casting_ids)

    try:
        read = await read_history(cfg, start=start, until=until, handle=handle, on_read=on_read)
        summary.records, summary.started_before_from = read.records, read.started_before_from
        summary.open_at_stop = await store.open_count()
    finally:
        await delete_prefix(redis, cfg.redis_prefix)
        await redis.aclose()
    summary.castings_found = len(found)
    summary.labelled = len(windows)
    summary.unlabelled = len(set(unlabelled))
    missing = [casting_id for casting_id in labels if casting_id not in found]
    labelled_rejected = [casting_id for casting_id in missing if casting_id in rejected]
    missing = [casting_id for casting_id in missing if casting_id not in rejected]
    summary.labelled_rejected = len(labelled_rejected)
    summary.labels_without_casting = len(missing)
    summary.examples = {"unlabelled": sorted(set(unlabelled))[:3], "labels_without_casting": missing[:3],
                        "labelled_rejected": labelled_rejected[:3]}
    summary.seconds = time.monotonic() - began
    return windows, summary
