"""What an averaged checkpoint (the recipe's fold models) costs the worker: one model vs the ensemble.

Both are the recipe's first candidate (3 conv blocks + bi-LSTM, models/recipe.py) on the default five
channels, scored through the worker's `Scorer` (float64, as the service runs on CPU) on the same
synthetic castings, alternating in one process so the ratio is measured side by side. A benchmark, not a
test: it asserts nothing.

    .venv/bin/python bench/bench_ensemble.py [--members 4] [--batch 32] [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import torch

    from models.ensemble import AveragedLSTMs
    from models.lstm_model import SteelDefectLSTM
    from models.recipe import default_candidates
    from models.synthetic import generate_castings
    from stream_app.service.model_runner import Scorer

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    windows = generate_castings(args.batch, seed=7).sequences
    config = default_candidates()[0].config(5, 1, 500, 10, args.batch)
    scorers = {
        "one model": Scorer(SteelDefectLSTM(config), "single", torch.device("cpu")),
        f"{args.members} members averaged": Scorer(AveragedLSTMs([config] * args.members), "ensemble",
                                                   torch.device("cpu")),
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in scorers}
    for scorer in scorers.values():
        scorer.score(windows[:2])  # warm-up
    for _ in range(args.repeats):
        for name, scorer in scorers.items():
            started = time.perf_counter()
            scorer.score(windows)
            times[name].append(1000 * (time.perf_counter() - started) / len(windows))
    mean_len = sum(len(w) for w in windows) / len(windows)
    print(f"batch of {len(windows)} castings (mean {mean_len:.0f} steps), {args.threads} torch thread(s), "
          f"median of {args.repeats}:")  # fmt: skip
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, ms in medians.items():
        print(f"  {name:<22} {ms:7.2f} ms per casting")
    single, ensemble = medians.values()
    print(f"  ensemble / one model   {ensemble / single:7.2f}x")


if __name__ == "__main__":
    main()
