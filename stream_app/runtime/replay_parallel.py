"""A replay that uses every core: several processes, each replaying its share of the partitions.

Python scores and parses on one core per process, so one replay process leaves the other cores idle.
Here the parent fixes the offsets once (`make_plan`: start, stop and lookback per partition, as a
single replay would), splits the partitions into `processes` shares of about equal record counts, and
starts one `run_replay` per share in its own process (spawned, so each loads torch and the model
itself). A casting's records all live in one partition (the topic is keyed by casting id), so a share
replays whole castings and the shares never meet. Each process runs under its own app id
(`<app_id>-p<i>`), hence its own Redis prefix, and writes to the same output topics. The parent follows
their progress and merges their summaries into one; if one fails, the others are stopped and the
error is raised.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import queue
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from aiokafka import TopicPartition

from stream_app.config import StreamConfig
from stream_app.errors import ReplayError
from stream_app.runtime.replay import ReplayPlan, ReplaySummary, make_plan, run_replay
from stream_app.runtime.topics import ensure_topics

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often the parent reads its children's progress


def split_plan(plan: ReplayPlan, shares: int) -> list[ReplayPlan]:
    """At most `shares` plans over disjoint partitions with about equal record counts (the largest partition
    goes to the share with the fewest records so far). Partitions with nothing to read go nowhere."""
    busy = sorted((tp for tp in plan.start if plan.stop[tp] > plan.start[tp]),
                  key=lambda tp: (plan.stop[tp] - plan.start[tp], -tp.partition), reverse=True)
    groups: list[list[TopicPartition]] = [[] for _ in range(min(shares, len(busy)))]
    loads = [0] * len(groups)
    for tp in busy:
        i = loads.index(min(loads))
        groups[i].append(tp)
        loads[i] += plan.stop[tp] - plan.start[tp]
    return [ReplayPlan({tp: plan.start[tp] for tp in g}, {tp: plan.stop[tp] for tp in g},
                       {tp: plan.lookback[tp] for tp in g if tp in plan.lookback}) for g in groups]


def merge(summaries: list[ReplaySummary], seconds: float) -> ReplaySummary:
    """One summary of the shares: counts add up; the duration is the wall time of the whole replay."""
    merged = ReplaySummary(seconds=seconds)
    for s in summaries:
        merged.records += s.records
        merged.readings += s.readings
        merged.castings_scored += s.castings_scored
        merged.deadletters.update(s.deadletters)
        merged.started_before_from += s.started_before_from
        merged.open_at_stop += s.open_at_stop
    return merged


def resolve_processes(processes: int | str, partitions: int) -> int:
    """`auto`: one per core, at most one per partition; a number is taken as given (at least 1)."""
    if processes == "auto":
        return max(1, min(os.cpu_count() or 1, partitions))
    count = int(processes)
    if count < 1:
        raise ReplayError(f"--processes must be at least 1 or 'auto', not {processes}")
    return count


def run_parallel_replay(
    cfg: StreamConfig,
    checkpoint: Path | None,
    *,
    processes: int | str,
    start: str = "earliest",
    until: str | None = None,
    predictions_topic: str | None = None,
    deadletter_topic: str | None = None,
    on_progress: Callable[[int, int, ReplaySummary], None] | None = None,
) -> ReplaySummary:
    """Replay with `processes` processes (see the module docstring); the merged summary."""
    began = time.monotonic()
    predictions_topic = predictions_topic or f"{cfg.topics.predictions}.replay"
    deadletter_topic = deadletter_topic or f"{cfg.topics.deadletter}.replay"
    plan = asyncio.run(make_plan(cfg, start, until))
    ensure_topics(cfg, [predictions_topic, deadletter_topic])  # once here, not raced by the processes
    shares = split_plan(plan, resolve_processes(processes, len(plan.start)))
    if not shares:  # nothing to read: one share over every partition says so as a single replay would
        shares = [plan]
    # each process's torch uses its share of the cores unless the config fixes the threads
    threads = cfg.model.torch_threads or max(1, (os.cpu_count() or 1) // len(shares))
    context = multiprocessing.get_context("spawn")
    updates: multiprocessing.Queue = context.Queue()
    children = []
    for i, share in enumerate(shares):
        child_cfg = cfg.model_copy(update={
            "app_id": f"{cfg.app_id}-p{i}",
            "model": cfg.model.model_copy(update={"torch_threads": threads}),
        })
        args = (i, child_cfg, checkpoint, share, predictions_topic, deadletter_topic, updates)
        children.append(context.Process(target=_replay_share, args=args, name=f"replay-{i}", daemon=True))
    log.info("replaying %d records in %d processes (%s)", plan.total, len(children),
             ", ".join(f"{sum(s.stop[tp] - s.start[tp] for tp in s.start)} records" for s in shares))
    for child in children:
        child.start()
    try:
        summaries = _follow(children, updates, plan.total, on_progress)
    finally:
        for child in children:
            if child.is_alive():
                child.terminate()
            child.join(timeout=10)
    return merge(summaries, time.monotonic() - began)


def _follow(children, updates, total: int, on_progress) -> list[ReplaySummary]:
    """Read the children's progress and results until each has sent its summary; an error from one raises."""
    report = on_progress or (lambda done, total, summary: None)
    latest: dict[int, ReplaySummary] = {}
    finished: dict[int, ReplaySummary] = {}
    while len(finished) < len(children):
        try:
            index, kind, payload = updates.get(timeout=POLL_S)
        except queue.Empty:
            dead = [c for i, c in enumerate(children) if i not in finished and not c.is_alive()]
            if dead and updates.empty():
                codes = ", ".join(f"{c.name} exit code {c.exitcode}" for c in dead)
                raise ReplayError(f"a replay process ended without a summary ({codes}); see its log above") from None
            continue
        if kind == "error":
            raise ReplayError(f"replay process {index}: {payload}")
        summary = _summary_from(payload)
        latest[index] = summary
        if kind == "done":
            finished[index] = summary
        merged = merge(list(latest.values()), 0.0)
        report(merged.records, total, merged)
    return [finished[i] for i in sorted(finished)]


def _fields_of(summary: ReplaySummary) -> dict:
    """What crosses the queue (not `dataclasses.asdict`, which rebuilds a Counter from its items' pairs)."""
    return {**vars(summary), "deadletters": dict(summary.deadletters)}


def _summary_from(fields: dict) -> ReplaySummary:
    return ReplaySummary(**{**fields, "deadletters": Counter(fields["deadletters"])})


def _replay_share(index: int, cfg: StreamConfig, checkpoint: Path | None, plan: ReplayPlan,
                  predictions_topic: str, deadletter_topic: str, updates) -> None:
    """One process: load the model, replay the share, send progress and then the summary (or the error)."""
    from stream_app.logging_setup import configure_logging
    from stream_app.service.model_runner import load_scorer

    configure_logging()
    try:
        import torch

        torch.set_num_threads(cfg.model.torch_threads or 1)
        scorer = load_scorer(cfg.model, cfg.validation.channels, checkpoint)
        last = 0.0

        def progress(done: int, total: int, summary: ReplaySummary) -> None:
            nonlocal last
            if time.monotonic() - last >= POLL_S:
                last = time.monotonic()
                updates.put((index, "progress", _fields_of(summary)))

        summary = asyncio.run(run_replay(cfg, scorer, predictions_topic=predictions_topic,
                                         deadletter_topic=deadletter_topic, on_progress=progress, plan=plan))
    except Exception as exc:  # noqa: BLE001 - every failure goes to the parent, which stops the replay
        updates.put((index, "error", f"{type(exc).__name__}: {exc}"))
        return
    updates.put((index, "done", _fields_of(summary)))
