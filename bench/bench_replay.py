"""Replay in one process vs several (`stream-app replay --processes N`), side by side on the same topic.

Fills one sensor topic (synthetic castings from 8 strands, most in chunks of 10 readings, some as single
readings, as a line sends them), then runs `stream-app replay` as a command, alternating 1 process and N
processes, `--repeats` times each. Each run is timed from the command's start to its exit, so the
processes' start (torch import, model load) counts against the parallel replay; the summary's own
readings/s are shown too. The default checkpoint scores in float64 on CPU, one torch thread per process.
A benchmark, not a test: it asserts nothing. Needs the local stack (`make services`).

`--baseline REV` adds a one-process replay of an earlier revision (its code, checked out into a temporary
worktree, run with this environment's packages) to the same alternating rounds.

    .venv/bin/python bench/bench_replay.py [--castings 6000] [--singles 300] [--processes 2] [--repeats 2]
                                           [--baseline REV] [--doc]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ingest_revisions import worktrees  # noqa: E402
from common import (  # noqa: E402
    ROOT,
    bench_config,
    create_topics,
    delete_topics,
    median,
    produce,
    unique_name,
    write_checkpoint,
    write_doc_block,
)

from stream_app.config import write_config  # noqa: E402


def fill_topic(cfg, castings: int, singles: int, chunk_size: int) -> int:
    """Readings of `castings` castings in chunks and `singles` castings one reading per message."""
    from models.synthetic import generate_castings
    from stream_app.tools.simulate import Casting, interleave

    data = generate_castings(castings + singles, seed=5).sequences
    chunked = [Casting(f"RB-{i:05d}", data[i]) for i in range(castings)]
    single = [Casting(f"RS-{i:05d}", data[castings + i]) for i in range(singles)]
    messages = [*interleave(chunked, strands=8, chunk_size=chunk_size), *interleave(single, strands=8)]
    produce(cfg, ((key.encode(), value) for key, value in messages))
    return sum(len(c.values) for c in chunked + single)


def run_replay(config: Path, cfg, processes: int, run: int, tree: Path | None = None) -> dict:
    """`stream-app replay` as a command; `tree`: an earlier revision's worktree, whose code it runs."""
    tag = f"p{processes}-r{run}" + ("-base" if tree else "")
    program = [sys.executable, "-m", "stream_app.cli"] if tree else [str(ROOT / ".venv/bin/stream-app")]
    command = [*program, "replay", "--config", str(config), "--no-progress",
               "--processes", str(processes), "--app-id", f"{cfg.app_id}-{tag}",
               "--output-topic", f"{cfg.topics.predictions}.{tag}",
               "--deadletter-topic", f"{cfg.topics.deadletter}.{tag}"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=tree or ROOT, check=False)
    wall = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the command and its replay processes
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"replay failed ({done.returncode}):\n{done.stdout}\n{done.stderr[-3000:]}")
    readings = int(re.search(r"^readings\s+(\d+)", done.stdout, re.M).group(1))
    scored = int(re.search(r"^castings scored\s+(\d+)", done.stdout, re.M).group(1))
    inner = float(re.search(r"^readings\s+\d+ \(([\d,]+)/s\)", done.stdout, re.M).group(1).replace(",", ""))
    return {"wall": wall, "readings": readings, "scored": scored, "inner_rate": inner, "cores": cpu / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--castings", type=int, default=6000, help="castings sent in chunks")
    parser.add_argument("--singles", type=int, default=300, help="castings sent one reading per message")
    parser.add_argument("--chunk-size", type=int, default=10)
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--baseline", metavar="REV", help="also replay in one process with this git revision's code")
    parser.add_argument("--doc", action="store_true",
                        help="write the table into docs/BENCHMARKS.md (block replay-processes)")
    args = parser.parse_args()

    app_id = unique_name("replay")
    with tempfile.TemporaryDirectory() as tmp, worktrees([args.baseline] if args.baseline else []) as trees:
        cfg = bench_config(app_id, write_checkpoint("default", Path(tmp)), partitions=args.partitions)
        cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"torch_threads": None})})
        config = write_config(cfg, Path(tmp) / "stream.yaml")
        try:
            create_topics(cfg)
            print(f"filling {cfg.topics.sensors} ...", flush=True)
            readings = fill_topic(cfg, args.castings, args.singles, args.chunk_size)
            one_label, many_label = "1 process", f"{args.processes} processes"
            variants = {one_label: (1, None), many_label: (args.processes, None)}
            if args.baseline:
                variants = {f"1 process, {args.baseline}": (1, trees[args.baseline]), **variants}
            results: dict[str, list[dict]] = {label: [] for label in variants}
            for run in range(args.repeats):
                for label, (processes, tree) in variants.items():
                    result = run_replay(config, cfg, processes, run, tree)
                    assert result["readings"] == readings and result["scored"] == args.castings + args.singles, result
                    results[label].append(result)
                    print(f"run {run} {label}: {result['wall']:.1f}s, "
                          f"{readings / result['wall']:,.0f} readings/s (summary {result['inner_rate']:,.0f}/s), "
                          f"{result['cores']:.2f} cores",
                          flush=True)
        finally:
            delete_topics(cfg, app_id)

    rate = {label: median(readings / r["wall"] for r in rs) for label, rs in results.items()}
    inner = {label: median(r["inner_rate"] for r in rs) for label, rs in results.items()}
    lines = [
        f"{readings:,} readings ({args.castings} castings in chunks of {args.chunk_size}, {args.singles} of single "
        f"readings), {args.partitions} partitions, default checkpoint (float64, CPU); medians of {args.repeats} "
        f"alternating runs; wall = the command from start to exit (process start, torch import, model load included); "
        f"cores = the command's CPU time (its processes' too, not the broker's or Redis's) / wall",
        "",
        "| replay | wall s | readings/s (wall) | readings/s (summary) | cores | ratio (wall) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label, rs in results.items():
        ratio = f"{rate[label] / rate[one_label]:.2f}×"
        lines.append(f"| {label} | {median(r['wall'] for r in rs):.1f} | {rate[label]:,.0f} | {inner[label]:,.0f} | "
                     f"{median(r['cores'] for r in rs):.2f} | {f'**{ratio}**' if label == many_label else ratio} |")
    print("\n".join(lines))
    if args.doc:
        write_doc_block("replay-processes", lines, None)
    print(f"cores: {os.cpu_count()}")


if __name__ == "__main__":
    main()
