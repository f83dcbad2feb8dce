"""A replay that uses every core: several processes, each replaying its share of the partitions.

One replay process parses on its event loop and runs the forward in its scoring thread, beside it, so it
keeps between one and two cores busy (1.27 on the 2-core machine) and leaves any others idle.
Here the parent starts the processes first (spawned: each imports torch and loads the model itself,
which takes seconds, so they do it while the parent starts and plans), fixes the offsets once
(`make_plan`: start, stop and lookback per partition, as a single replay would), splits the
partitions into shares of about equal record counts and hands each process one, which it replays
with `run_replay`. A casting's records all live in one partition (the topic is keyed by casting id), so a share
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
from stream_app.runtime.heap import settle_heap
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


def resolve_processes(processes: int | str) -> int:
    """`auto`: one per core; a number is taken as given (at least 1). Shares beyond the partitions with
    records stay empty (`split_plan`), and their processes end at once."""
    if processes == "auto":
        return max(1, os.cpu_count() or 1)
    count = int(processes)
    if count < 1:
        raise ReplayError(f"--processes must be at least 1 or 'auto', not {processes}")
    return count


class ParallelReplay:
    """The replay processes, started first so that their start (torch import, model load: a few seconds
    each) overlaps the parent's own start and planning; `run` then plans, hands out the shares and follows
    them. A context manager: leaving it stops any process still running."""

    def __init__(self, cfg: StreamConfig, checkpoint: Path | None, processes: int | str) -> None:
        self.cfg = cfg
        self.began = time.monotonic()
        self.version: str | None = None
        count = resolve_processes(processes)
        # each process's torch uses its share of the cores unless the config fixes the threads
        threads = cfg.model.torch_threads or max(1, (os.cpu_count() or 1) // count)
        context = multiprocessing.get_context("spawn")
        self.updates: multiprocessing.Queue = context.Queue()
        self.shares: multiprocessing.Queue = context.Queue()
        self.children = []
        for i in range(count):
            child_cfg = cfg.model_copy(update={
                "app_id": f"{cfg.app_id}-p{i}",
                "model": cfg.model.model_copy(update={"torch_threads": threads}),
            })
            args = (i, child_cfg, checkpoint, self.shares, self.updates)
            self.children.append(context.Process(target=_replay_share, args=args, name=f"replay-{i}", daemon=True))
        for child in self.children:
            child.start()

    def __enter__(self) -> ParallelReplay:
        return self

    def __exit__(self, *exc) -> None:
        for child in self.children:
            if child.is_alive():
                child.terminate()
            child.join(timeout=10)

    def model_version(self) -> str:
        """The version of the model the processes loaded (each checks it against the channel set), once the
        first one has; an error of a process is raised. The summary's duration counts from here, as a
        single replay's counts from after its model is loaded."""
        while self.version is None:
            index, kind, payload = self._next_update()
            if kind == "error":
                raise ReplayError(f"replay process {index}: {payload}")
            if kind == "ready":
                self.version = payload
        self.began = time.monotonic()
        return self.version

    def _next_update(self) -> tuple[int, str, object]:
        while True:
            try:
                return self.updates.get(timeout=POLL_S)
            except queue.Empty:
                _check_alive(self.children, set(), self.updates)

    def run(
        self,
        *,
        start: str = "earliest",
        until: str | None = None,
        predictions_topic: str | None = None,
        deadletter_topic: str | None = None,
        on_progress: Callable[[int, int, ReplaySummary], None] | None = None,
    ) -> ReplaySummary:
        """Plan, hand each process a share (an empty one ends it), follow them; the merged summary."""
        self.model_version()
        cfg = self.cfg
        predictions_topic = predictions_topic or f"{cfg.topics.predictions}.replay"
        deadletter_topic = deadletter_topic or f"{cfg.topics.deadletter}.replay"
        plan = asyncio.run(make_plan(cfg, start, until))
        ensure_topics(cfg, [predictions_topic, deadletter_topic])  # once here, not raced by the processes
        shares = split_plan(plan, len(self.children)) or [plan]  # nothing to read: one replay says so
        log.info("replaying %d records in %d processes (%s)", plan.total, len(shares),
                 ", ".join(f"{share.total} records" for share in shares))
        for i in range(len(self.children)):
            self.shares.put((shares[i], predictions_topic, deadletter_topic) if i < len(shares) else None)
        summaries = self._follow(plan.total, on_progress)
        return merge(summaries, time.monotonic() - self.began)

    def _follow(self, total: int, on_progress) -> list[ReplaySummary]:
        """Read the processes' progress and results until each has sent its summary; an error raises."""
        report = on_progress or (lambda done, total, summary: None)
        latest: dict[int, ReplaySummary] = {}
        finished: dict[int, ReplaySummary] = {}
        while len(finished) < len(self.children):
            try:
                index, kind, payload = self.updates.get(timeout=POLL_S)
            except queue.Empty:
                _check_alive(self.children, set(finished), self.updates)
                continue
            if kind == "error":
                raise ReplayError(f"replay process {index}: {payload}")
            if kind == "ready":
                continue
            summary = _summary_from(payload)
            latest[index] = summary
            if kind == "done":
                finished[index] = summary
            merged = merge(list(latest.values()), 0.0)
            report(merged.records, total, merged)
        return [finished[i] for i in sorted(finished)]


def run_parallel_replay(cfg: StreamConfig, checkpoint: Path | None, *, processes: int | str,
                        **kwargs) -> ReplaySummary:
    """Replay with `processes` processes (see the module docstring and `ParallelReplay.run`)."""
    with ParallelReplay(cfg, checkpoint, processes) as replay:
        return replay.run(**kwargs)


def _check_alive(children, finished: set[int], updates) -> None:
    """A process that ended without its summary (killed, or crashed outside Python) fails the replay."""
    dead = [c for i, c in enumerate(children) if i not in finished and not c.is_alive()]
    if dead and updates.empty():
        codes = ", ".join(f"{c.name} exit code {c.exitcode}" for c in dead)
        raise ReplayError(f"a replay process ended without a summary ({codes}); see its log above")


def _fields_of(summary: ReplaySummary) -> dict:
    """What crosses the queue (not `dataclasses.asdict`, which rebuilds a Counter from its items' pairs)."""
    return {**vars(summary), "deadletters": dict(summary.deadletters)}


def _summary_from(fields: dict) -> ReplaySummary:
    return ReplaySummary(**{**fields, "deadletters": Counter(fields["deadletters"])})


def _replay_share(index: int, cfg: StreamConfig, checkpoint: Path | None, shares, updates) -> None:
    """One process: load the model, wait for its share, replay it, send progress and then the summary (or
    the error). No share (None): nothing to do, an empty summary."""
    from stream_app.logging_setup import configure_logging
    from stream_app.service.model_runner import load_scorer

    configure_logging()
    try:
        import torch

        torch.set_num_threads(cfg.model.torch_threads or 1)
        scorer = load_scorer(cfg.model, cfg.validation.channels, checkpoint)
        settle_heap()  # torch and the model are what this process keeps (runtime/heap.py)
        updates.put((index, "ready", scorer.version))
        work = shares.get()
        if work is None:
            updates.put((index, "done", _fields_of(ReplaySummary())))
            return
        plan, predictions_topic, deadletter_topic = work
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
