"""Inference benchmark of the LSTM variants on this CPU (a benchmark, not a test: it asserts nothing).

For each variant (and the default checkpoint when present): per-casting latency at batch 1 (median
over repeats), amortised per-casting latency at batch 64, peak resident memory of a fresh process
that loads the model and runs both, and the model size (parameters + buffers, and the saved file).
Inputs are synthetic castings from ``models.synthetic`` (lengths 100..500, packed by length).

    .venv/bin/python bench/bench_model.py [--threads 1] [--repeats 20] [--float64] [--json out.json]

Original targets for reference: < 200 ms per sequence, < 4 GB memory, < 50 MB model.
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import resource
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

VARIANTS = ("lightweight", "standard", "bidirectional", "deep", "default-checkpoint")
TARGET_MS, TARGET_MB_MEMORY, TARGET_MB_MODEL = 200.0, 4096.0, 50.0


def _measure(variant: str, threads: int, repeats: int, float64: bool, queue) -> None:
    """Runs in a fresh process so that its peak RSS belongs to this variant alone."""
    import numpy as np
    import torch

    from models.checkpoint import DEFAULT_CHECKPOINT, load_checkpoint
    from models.dataset import pad_sequences
    from models.lstm_model import LSTMModelVariants, SteelDefectLSTM
    from models.synthetic import generate_castings
    from models.tracking import LSTMPerformanceTracker

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    if variant == "default-checkpoint":
        model, _ = load_checkpoint(DEFAULT_CHECKPOINT)
    else:
        model = SteelDefectLSTM(LSTMModelVariants.all()[variant]).eval()
    dtype = torch.float64 if float64 else torch.float32
    model = model.to(dtype)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    castings = generate_castings(64 + repeats, seed=123).sequences

    def run(seqs) -> float:
        x, lengths = pad_sequences(seqs)
        start = time.perf_counter()
        with torch.inference_mode():
            model(torch.from_numpy(x).to(dtype), torch.from_numpy(lengths))
        return time.perf_counter() - start

    run(castings[:2])  # warm-up
    single_ms = [1000 * run([c]) for c in castings[64 : 64 + repeats]]
    batch_ms = [1000 * run(castings[:64]) / 64 for _ in range(max(3, repeats // 5))]
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tracker = LSTMPerformanceTracker()
    for ms in single_ms:
        tracker.log_inference_time(batch_size=1, inference_time=ms / 1000)
    for ms in batch_ms:
        tracker.log_inference_time(batch_size=64, inference_time=64 * ms / 1000)
    tracker.log_memory_usage(peak_rss_mb)
    summary = tracker.get_performance_summary()
    queue.put(
        {
            "variant": variant,
            "config": {k: model.config["architecture"][k] for k in ("hidden_size", "num_layers", "bidirectional")},
            "parameters": model.count_parameters(),
            "model_mb": model.model_size_mb(),
            "file_mb": len(buf.getvalue()) / 2**20,
            "batch1_ms_median": statistics.median(single_ms),
            "batch1_ms_p95": float(np.percentile(single_ms, 95)),
            "batch64_ms_per_casting": statistics.median(batch_ms),
            "mean_steps_batch1": float(np.mean([len(c) for c in castings[64 : 64 + repeats]])),
            "peak_rss_mb": peak_rss_mb,
            "meets_inference_target": summary["meets_inference_target"],
            "meets_memory_target": summary["meets_memory_target"],
            "meets_model_size_target": len(buf.getvalue()) / 2**20 < TARGET_MB_MODEL,
        }
    )


def _flags(row: dict) -> str:
    """y/n for time, memory and size targets (from LSTMPerformanceTracker and the file size)."""
    keys = ("meets_inference_target", "meets_memory_target", "meets_model_size_target")
    return "".join("y" if row[k] else "n" for k in keys)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LSTM inference benchmark (CPU)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--float64", action="store_true", help="run in float64 (the service's default)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    from models.checkpoint import DEFAULT_CHECKPOINT

    ctx = mp.get_context("spawn")
    rows = []
    for variant in args.variants:
        if variant == "default-checkpoint" and not DEFAULT_CHECKPOINT.exists():
            continue
        queue = ctx.Queue()
        proc = ctx.Process(target=_measure, args=(variant, args.threads, args.repeats, args.float64, queue))
        proc.start()
        rows.append(queue.get())
        proc.join()

    header = (f"{'variant':<20}{'h/L/bi':>10}{'params':>10}{'model MB':>10}{'batch1 ms':>11}{'p95 ms':>9}"
              f"{'b64 ms/cast':>13}{'peak RSS MB':>13}{'targets':>9}")  # fmt: skip
    precision = "float64" if args.float64 else "float32"
    print(f"CPU inference, torch threads={args.threads}, {precision}, synthetic castings of 100..500 steps")
    print(header)
    print("-" * len(header))
    for r in rows:
        c = r["config"]
        arch = f"{c['hidden_size']}/{c['num_layers']}/{'y' if c['bidirectional'] else 'n'}"
        print(f"{r['variant']:<20}{arch:>10}{r['parameters']:>10}{r['model_mb']:>10.2f}{r['batch1_ms_median']:>11.1f}"
              f"{r['batch1_ms_p95']:>9.1f}{r['batch64_ms_per_casting']:>13.2f}{r['peak_rss_mb']:>13.0f}"
              f"{_flags(r):>9}")  # fmt: skip
    print(f"targets (time/memory/size): < {TARGET_MS:.0f} ms per sequence, < {TARGET_MB_MEMORY:.0f} MB memory, "
          f"< {TARGET_MB_MODEL:.0f} MB model")  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
