"""What each change bought: the worker's ingest from several git revisions, side by side in one run.

Each revision is checked out into a temporary worktree and its worker (`python -m stream_app.cli worker`,
run from that worktree, so it imports that revision's code with this environment's packages) ingests the
same topic; rounds alternate the revisions, so a noisy neighbour hits them all alike. Same topics as
bench_ingest (castings of 300 steps, 4 strands interleaved, 4 partitions); each revision's own default
config (its `ingest_take_size` included). The services must be up (`make services`).

    .venv/bin/python bench/bench_ingest_revisions.py REV [REV ...] [--chunks 1 50] [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import DEFAULT_READINGS, STEPS_PER_CASTING, run_worker, sensor_messages  # noqa: E402
from common import (  # noqa: E402
    ROOT,
    bench_config,
    create_topics,
    delete_redis_prefix,
    delete_topics,
    machine_line,
    produce,
    unique_name,
    write_checkpoint,
)


@contextlib.contextmanager
def worktrees(revisions: list[str]) -> Iterator[dict[str, Path]]:
    """A detached worktree per revision, removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="bench-revisions-"))
    trees: dict[str, Path] = {}
    try:
        for rev in revisions:
            path = base / rev.replace("/", "_")
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(path), rev], check=True)
            trees[rev] = path
        yield trees
    finally:
        for path in trees.values():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("revisions", nargs="+", help="git revisions, oldest first")
    parser.add_argument("--chunks", type=int, nargs="*", default=[1, 50])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--max-worker-s", type=float, default=30.0)
    args = parser.parse_args(argv)

    run_id = unique_name("revisions")
    checkpoint = write_checkpoint("lightweight", Path(tempfile.mkdtemp(prefix=f"{run_id}-")))
    rates: dict[tuple[int, str], list[float]] = {}
    print(machine_line())
    with worktrees(args.revisions) as trees:
        for chunk in args.chunks:
            cfg = bench_config(f"{run_id}-c{chunk}", checkpoint)
            create_topics(cfg)
            total = DEFAULT_READINGS[chunk] // STEPS_PER_CASTING * STEPS_PER_CASTING
            produce(cfg, sensor_messages(DEFAULT_READINGS[chunk], chunk, f"R{chunk}"))
            try:
                for r in range(args.rounds):
                    for i, (rev, tree) in enumerate(trees.items()):
                        wcfg = cfg.model_copy(update={"app_id": f"{cfg.app_id}-v{i}-{r}"})
                        try:
                            n, s = run_worker(wcfg, total, naive=False, max_s=args.max_worker_s, cwd=tree)
                        finally:
                            delete_redis_prefix(wcfg)
                        rates.setdefault((chunk, rev), []).append(n / s)
                        print(f"chunk {chunk} round {r} {rev}: {n / s:,.0f}/s", flush=True)
            finally:
                delete_topics(cfg, f"{run_id}-c{chunk}")

    print(f"\nworker readings/s, medians of {args.rounds} round(s); ratio to the first revision")
    print("| revision | " + " | ".join("single reading" if c == 1 else f"chunk of {c}" for c in args.chunks) + " |")
    print("|---|" + "---:|" * len(args.chunks))
    for rev in args.revisions:
        cells = []
        for chunk in args.chunks:
            median = statistics.median(rates[(chunk, rev)])
            first = statistics.median(rates[(chunk, args.revisions[0])])
            cells.append(f"{median:,.0f} ({median / first:.2f}x)")
        print(f"| `{rev}` | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
