"""Profile the real worker while it drains a pre-filled sensor topic (py-spy), or just time it.

    .venv/bin/pip install py-spy            # a profiler, not a project dependency
    .venv/bin/python bench/profile_worker.py CHUNK READINGS SECONDS OUT.json|- [NAME=VALUE ...]
e.g. bench/profile_worker.py 50 1500000 6 /tmp/w50.json    (speedscope JSON; OUT.txt: collapsed stacks;
'-' only times the worker; NAME=VALUE: STREAM_APP__* names override the worker's config, others go
into its environment)
Prints the worker's readings/s over the sampled seconds. Topics and Redis keys are its own and deleted.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_ingest import sensor_messages  # noqa: E402
from common import (  # noqa: E402
    ROOT,
    bench_config,
    bench_worker,
    create_topics,
    delete_redis_prefix,
    delete_topics,
    produce,
    unique_name,
    write_checkpoint,
)

from stream_app.config import ENV_PREFIX, load_config, write_config  # noqa: E402


def main() -> int:
    chunk, readings, seconds, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    assignments = dict(arg.split("=", 1) for arg in sys.argv[5:])
    run_id = unique_name("prof")
    tmp = Path(tempfile.mkdtemp(prefix=f"{run_id}-"))
    cfg = bench_config(run_id, write_checkpoint("lightweight", tmp))
    overrides = {k: v for k, v in assignments.items() if k.startswith(ENV_PREFIX)}
    if overrides:  # the same config, with the STREAM_APP__* overrides applied as the worker would apply them
        cfg = load_config(write_config(cfg, tmp / "base.yaml"), environ=overrides)
    create_topics(cfg)
    counter = "casting_readings_ingested_total"
    try:
        produce(cfg, sensor_messages(readings, chunk, "P"))
        with bench_worker(cfg, env={k: v for k, v in assignments.items() if k not in overrides}) as worker:
            while not worker.metric(counter):
                worker.check_alive()
                time.sleep(0.05)
            t0, c0 = time.perf_counter(), worker.metric(counter)
            if out != "-":
                fmt = "raw" if out.endswith(".txt") else "speedscope"
                subprocess.run([str(ROOT / ".venv/bin/py-spy"), "record", "-p", str(worker.proc.pid), "-d", seconds,
                                "-o", out, "-f", fmt, "-r", "200"], check=False, capture_output=True)
            else:
                time.sleep(float(seconds))
            c1, t1 = worker.metric(counter), time.perf_counter()
            print(f"worker: {(c1 - c0) / (t1 - t0):,.0f} readings/s over {t1 - t0:.1f}s ({c1:,.0f} counted)")
    finally:
        delete_topics(cfg, run_id)
        delete_redis_prefix(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
