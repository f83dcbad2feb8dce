"""Scoring benchmark: the service's scoring path against the raw model forward, side by side in one run.

For each variant (default, lightweight), precision (float32, float64) and batch size (1, 8, 32, 64, 128),
with synthetic castings of 100..500 steps (the realistic mix from ``models.synthetic``):
    raw   `model(x, lengths)` on pre-built padded tensors already on the device (the ceiling);
    path  `ScoringStage.process`: one Redis pipeline fetches the windows, they are assembled, sorted,
          padded and packed, the model runs in the scoring thread, predictions are serialised to JSON
          and stored (the scoring part of the end-to-end path, without Kafka).
Raw and path alternate on the same batches, repeats are medians. castings/s = batch / seconds.
The ratio that matters is path / raw at the same precision; the service scores in float64 on CPU
(model.precision=auto), so the float32 raw ceiling is shown as well.

    .venv/bin/python bench/bench_scoring.py [--threads 1] [--repeats 7] [--json out.json]
    .venv/bin/python bench/bench_scoring.py --device cuda --precisions float32 [--autocast bf16]   (bench/gpu.sh)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
from common import (  # noqa: E402
    build_model,
    delete_redis_prefix,
    load_config,
    machine_line,
    median,
    unique_name,
)

BATCHES = (1, 8, 32, 64, 128)
DTYPES = {"float32": "float32", "float64": "float64"}


def autocast_forward(model, device_type: str):
    """Wrap the model's forward in bf16 autocast (the flag is thread-local, so it goes inside the call)."""
    import torch

    forward = model.forward

    @functools.wraps(forward)
    def wrapped(*args, **kwargs):
        with torch.autocast(device_type, dtype=torch.bfloat16):
            return forward(*args, **kwargs)

    model.forward = wrapped
    return model


async def _bench_cell(model, device, dtype, windows_pool, batch, repeats, autocast, cfg, scorer_version):
    import torch

    from stream_app.connections import create_redis
    from stream_app.messages import Readings
    from stream_app.metrics import Metrics
    from stream_app.predict import ScoringStage
    from stream_app.records import ScoringRequest
    from stream_app.scoring import Scorer
    from stream_app.window_store import RedisWindowStore

    scorer = Scorer(model, scorer_version, device, dtype)
    if autocast:
        autocast_forward(scorer.model, device.type)
    redis = create_redis(cfg.redis)
    store = RedisWindowStore(redis, cfg.redis_prefix, cfg.redis.key_ttl_s)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")  # as the worker
    stage = ScoringStage(store, scorer, cfg.window, scorer.threshold(cfg.model.threshold), batch, Metrics(), executor)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def raw_forward(x, lengths):
        with torch.inference_mode():
            out = scorer.model(x, lengths)
            sync()
        return out

    raw_s, path_s = [], []
    try:
        # Two passes over the same batches: the first warms up (CPU float32 LSTM kernels are prepared once
        # per input shape, and the service meets the same 100..500 shapes again and again), the second is timed.
        for r in range(2 * repeats):
            start = ((r % repeats) * batch) % max(1, len(windows_pool) - batch + 1)
            windows = windows_pool[start: start + batch]
            ids = [f"S{r}-{i}" for i in range(len(windows))]
            # the path: windows sit in Redis as the ingest left them
            await store.append([Readings(c, 0, w) for c, w in zip(ids, windows, strict=True)], time.time())
            requests = [ScoringRequest(c, len(w), time.time(), {"topic": "bench", "partition": 0, "offset": i})
                        for i, (c, w) in enumerate(zip(ids, windows, strict=True))]
            # the ceiling: padded tensors built beforehand, already on the device in the scoring dtype
            lengths = np.array([len(w) for w in windows])
            padded = np.zeros((len(windows), lengths.max(), windows[0].shape[1]), dtype=np.float32)
            for i, w in enumerate(windows):
                padded[i, : len(w)] = w
            x = torch.from_numpy(padded).to(device=device, dtype=dtype)
            lengths_t = torch.from_numpy(lengths)
            sync()

            t0 = time.perf_counter()
            await asyncio.get_running_loop().run_in_executor(executor, raw_forward, x, lengths_t)
            t1 = time.perf_counter()
            outcome = await stage.process(requests)
            t2 = time.perf_counter()
            if len(outcome.predictions) != len(windows):
                raise RuntimeError(f"scoring path gave {len(outcome.predictions)} predictions for {len(windows)}")
            await stage.finish(outcome)
            await redis.delete(*(store.done_key(c) for c in ids))
            if r >= repeats:
                raw_s.append(t1 - t0)
                path_s.append(t2 - t1)
    finally:
        executor.shutdown()
        await redis.aclose()
    return len(windows) / median(raw_s), len(windows) / median(path_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", nargs="*", default=["default", "lightweight"])
    parser.add_argument("--precisions", nargs="*", default=["float32", "float64"], choices=list(DTYPES))
    parser.add_argument("--batches", nargs="*", type=int, default=list(BATCHES))
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (CPU; the tests' workers use 1)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--autocast", default="none", choices=["none", "bf16"])
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from models.synthetic import generate_castings

    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda but torch sees no CUDA device (torch.cuda.is_available() is False)",
              file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    card = torch.cuda.get_device_name(0) if args.device == "cuda" else None
    castings = generate_castings(max(256, 2 * max(args.batches)), seed=11).sequences
    pool = [np.asarray(s, dtype=np.float32) for s in castings]
    cfg = load_config(environ={}).model_copy(update={"app_id": unique_name("scoring")})
    rows = []
    print(machine_line() + (f", {card}" if card else ""))
    print(f"device={args.device} autocast={args.autocast} torch threads={args.threads} "
          f"lengths {min(map(len, pool))}..{max(map(len, pool))} (mean {np.mean([len(w) for w in pool]):.0f})")
    try:
        for variant in args.variants:
            model = build_model(variant)
            for precision in args.precisions:
                dtype = getattr(torch, DTYPES[precision])
                for batch in args.batches:
                    raw, path = asyncio.run(_bench_cell(model, device, dtype, pool, batch, args.repeats,
                                                        args.autocast == "bf16", cfg, f"bench-{variant}"))
                    rows.append({"variant": variant, "precision": precision, "batch": batch, "raw": raw,
                                 "path": path, "ratio": path / raw, "device": args.device,
                                 "autocast": args.autocast})
                    print(f"  {variant:<12}{precision:<9}b{batch:<4} raw {raw:9.1f}/s  path {path:9.1f}/s  "
                          f"{path / raw:5.2f}", flush=True)
    finally:
        delete_redis_prefix(cfg)

    print(f"\ncastings/s, median of {args.repeats}; path/raw at the same precision"
          + (f"; device {args.device}{' ' + card if card else ''}, autocast {args.autocast}"))
    header = f"{'variant':<13}{'precision':<10}{'batch':>6}{'raw fwd':>10}{'path':>10}{'path/raw':>10}"
    extra = "float32" in args.precisions and "float64" in args.precisions
    if extra:
        header += f"{'path/raw32':>12}"
    print(header)
    print("-" * len(header))
    raw32 = {(r["variant"], r["batch"]): r["raw"] for r in rows if r["precision"] == "float32"}
    for r in rows:
        line = (f"{r['variant']:<13}{r['precision']:<10}{r['batch']:>6}{r['raw']:>10.1f}{r['path']:>10.1f}"
                f"{r['ratio']:>10.2f}")
        if extra:
            line += f"{r['path'] / raw32[(r['variant'], r['batch'])]:>12.2f}"
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine_line(), "card": card, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
