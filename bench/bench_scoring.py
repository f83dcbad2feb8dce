"""Scoring benchmark: the service's scoring path against the raw model forward, side by side in one run.

For each variant (default, lightweight), precision (float32, float64) and batch size (1, 8, 32, 64, 128),
with synthetic castings of 100..500 steps (the realistic mix from ``models.synthetic``), the same
`--repeats` batches are run three ways, back to back, and timed as a whole:
    raw        `model(x, lengths)` on pre-built padded tensors already on the device (the ceiling);
    1-at-a-time  `ScoringStage.process` + `finish` per batch (as the replay runs it): one Redis pipeline
               fetches the windows, they are assembled, sorted, padded and packed, the model runs in the
               scoring thread, predictions are serialised to JSON and stored, the windows are freed;
    pipelined  the same stages through `ScoringPipeline`, as the worker's scoring agent runs them: batch
               N+1 is fetched and assembled while batch N's forward runs (the scoring part of the
               end-to-end path, without Kafka).
castings/s = castings / seconds; one warm-up round, then the median of two. The ratio that matters is
pipelined / raw at the same precision; the service scores in float64 on CPU (model.precision=auto), so
the float32 raw ceiling is shown as well.

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
    write_doc_block,
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

    from stream_app.runtime.connections import create_redis
    from stream_app.runtime.scoring_pipeline import ScoringPipeline
    from stream_app.service.messages import Readings
    from stream_app.service.model_runner import Scorer
    from stream_app.service.records import ScoringRequest
    from stream_app.service.redis_window_store import RedisWindowStore
    from stream_app.service.scoring_stage import ScoringStage
    from stream_app.service.window_store import IngestWrites

    scorer = Scorer(model, scorer_version, device, dtype)
    if autocast:
        autocast_forward(scorer.model, device.type)
    redis = create_redis(cfg.redis)
    store = RedisWindowStore(redis, cfg.redis_prefix, cfg.redis.key_ttl_s)
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="scoring")  # as the worker
    stage = ScoringStage(store, scorer, cfg.window, scorer.threshold(cfg.model.threshold), batch, executor)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def raw_forward(x, lengths):
        with torch.inference_mode():
            out = scorer.model(x, lengths)
            sync()
        return out

    def load(tag: str, windows: list[np.ndarray]) -> tuple[list[str], list]:
        ids = [f"{tag}-{i}" for i in range(len(windows))]
        requests = [ScoringRequest(c, len(w), time.time(), {"topic": "bench", "partition": 0, "offset": i})
                    for i, (c, w) in enumerate(zip(ids, windows, strict=True))]
        return ids, requests

    async def deliver(outcome, _token) -> None:  # the agent also sends to Kafka; that is §3's business
        if len(outcome.predictions) != len(outcome.casting_ids):
            raise RuntimeError(f"scoring path gave {len(outcome.predictions)} predictions "
                               f"for {len(outcome.casting_ids)}")
        await stage.finish(outcome)

    # `repeats` different batches of the pool make one round; round 0 warms up (CPU float32 LSTM kernels are
    # prepared once per input shape, and the service meets the same 100..500 shapes again and again).
    batches = [windows_pool[s: s + batch]
               for s in (((r * batch) % max(1, len(windows_pool) - batch + 1)) for r in range(repeats))]
    rounds = {"raw": [], "seq": [], "pipe": []}
    try:
        for rnd in range(3):
            # the path: windows sit in Redis as the ingest left them
            seq_requests, pipe_requests, done_ids = [], [], []
            for b, windows in enumerate(batches):
                for tag, target in ((f"S{rnd}.{b}", seq_requests), (f"P{rnd}.{b}", pipe_requests)):
                    ids, requests = load(tag, windows)
                    rows = [Readings(c, 0, w) for c, w in zip(ids, windows, strict=True)]
                    await store.write_ingest(IngestWrites(rows, seals={}, discard=[]), time.time())
                    target.append(requests)
                    done_ids += ids
            # the ceiling: padded tensors built beforehand, already on the device in the scoring dtype
            tensors = []
            for windows in batches:
                lengths = np.array([len(w) for w in windows])
                padded = np.zeros((len(windows), lengths.max(), windows[0].shape[1]), dtype=np.float32)
                for i, w in enumerate(windows):
                    padded[i, : len(w)] = w
                tensors.append((torch.from_numpy(padded).to(device=device, dtype=dtype), torch.from_numpy(lengths)))
            sync()
            loop = asyncio.get_running_loop()

            t0 = time.perf_counter()
            for x, lengths_t in tensors:
                await loop.run_in_executor(executor, raw_forward, x, lengths_t)
            t1 = time.perf_counter()
            for requests in seq_requests:  # one batch at a time, as the replay runs it
                await deliver(await stage.process(requests), None)
            t2 = time.perf_counter()
            pipeline = ScoringPipeline(stage, deliver)  # as the worker's scoring agent runs it
            for b, requests in enumerate(pipe_requests):
                await pipeline.submit(requests, b)
            await pipeline.drain()
            t3 = time.perf_counter()
            await redis.delete(*(store.done_key(c) for c in done_ids))
            if rnd:
                rounds["raw"].append(t1 - t0)
                rounds["seq"].append(t2 - t1)
                rounds["pipe"].append(t3 - t2)
    finally:
        executor.shutdown()
        await redis.aclose()
    n = sum(map(len, batches))
    return {name: n / median(times) for name, times in rounds.items()}


def markdown_table(rows: list[dict], raw32: dict | None, card: str | None) -> list[str]:
    header = "| variant | precision | batch | raw fwd | 1-at-a-time | pipelined | 1/raw | **pipe/raw** |"
    rule = "|---|---|---:|---:|---:|---:|---:|---:|"
    if raw32 is not None:
        header += " pipe/raw float32 |"
        rule += "---:|"
    lines = [f"castings/s{' on ' + card if card else ''}:", "", header, rule]
    for r in rows:
        ratio = f"**{r['ratio']:.2f}**" if r["batch"] == 64 else f"{r['ratio']:.2f}"
        line = (f"| {r['variant']} | {r['precision']} | {r['batch']} | {r['raw']:.0f} | {r['seq']:.0f} | "
                f"{r['pipe']:.0f} | {r['ratio_seq']:.2f} | {ratio} |")
        if raw32 is not None:
            line += f" {r['pipe'] / raw32[(r['variant'], r['batch'])]:.2f} |"
        lines.append(line)
    return lines


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
    parser.add_argument("--doc", action="store_true",
                        help="also write the table into docs/BENCHMARKS.md (block 'scoring', on CUDA 'gpu-<autocast>')")
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
                    rates = asyncio.run(_bench_cell(model, device, dtype, pool, batch, args.repeats,
                                                    args.autocast == "bf16", cfg, f"bench-{variant}"))
                    rows.append({"variant": variant, "precision": precision, "batch": batch, **rates,
                                 "ratio": rates["pipe"] / rates["raw"], "ratio_seq": rates["seq"] / rates["raw"],
                                 "device": args.device, "autocast": args.autocast})
                    print(f"  {variant:<12}{precision:<9}b{batch:<4} raw {rates['raw']:9.1f}/s  "
                          f"one-at-a-time {rates['seq']:9.1f}/s  pipelined {rates['pipe']:9.1f}/s  "
                          f"{rows[-1]['ratio']:5.2f}", flush=True)
    finally:
        delete_redis_prefix(cfg)

    print(f"\ncastings/s over {args.repeats} batches, median of 2 rounds after a warm-up round; ratios against raw "
          f"at the same precision; device {args.device}{' ' + card if card else ''}, autocast {args.autocast}")
    header = (f"{'variant':<13}{'precision':<10}{'batch':>6}{'raw fwd':>10}{'1-at-a-time':>12}{'pipelined':>11}"
              f"{'1/raw':>7}{'pipe/raw':>10}")
    extra = "float32" in args.precisions and "float64" in args.precisions
    if extra:
        header += f"{'pipe/raw32':>12}"
    print(header)
    print("-" * len(header))
    raw32 = {(r["variant"], r["batch"]): r["raw"] for r in rows if r["precision"] == "float32"}
    for r in rows:
        line = (f"{r['variant']:<13}{r['precision']:<10}{r['batch']:>6}{r['raw']:>10.1f}{r['seq']:>12.1f}"
                f"{r['pipe']:>11.1f}{r['ratio_seq']:>7.2f}{r['ratio']:>10.2f}")
        if extra:
            line += f"{r['pipe'] / raw32[(r['variant'], r['batch'])]:>12.2f}"
        print(line)
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": machine_line(), "card": card, "rows": rows}, indent=2) + "\n")
    if args.doc:
        block = "scoring" if args.device == "cpu" else f"gpu-{args.autocast}"
        write_doc_block(block, markdown_table(rows, raw32 if extra else None, card),
                        argv)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
