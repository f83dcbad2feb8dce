"""The training recipe on public data: five UCR/UEA sets through `stream-app train/evaluate`.

Each set is converted to the plant dataset file format (models/uea_convert.py), trained with
``stream-app train --data train.parquet --labels train_labels.csv --stream-config stream.yaml
--test-fraction 0`` (the cross-validated search and early stopping see only the TRAIN split) and scored
once on the archive's test split with ``stream-app evaluate``. Prints a markdown table: LSTM test
accuracy beside the summary-statistics logistic baseline and the published 1-NN DTW accuracy.

    nice .venv/bin/python bench/bench_uea.py [--out runs/uea-bench] [--budget-s 600] [--threads 1] [--seed 0] [NAME ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from models.uea_convert import DATASETS, PUBLISHED_1NN_DTW, convert  # noqa: E402

STREAM_APP = str(Path(sys.executable).with_name("stream-app"))


def run_one(name: str, out: Path, budget_s: float, threads: int, seed: int) -> dict:
    folder = convert(name, out / "data")
    run_dir = out / "runs" / name
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train = [
        STREAM_APP, "train", "--data", str(folder / "train.parquet"), "--labels", str(folder / "train_labels.csv"),
        "--stream-config", str(folder / "stream.yaml"), "--test-fraction", "0", "--output-dir", str(run_dir),
        "--search-budget-s", str(budget_s), "--threads", str(threads), "--seed", str(seed), "--no-progress",
    ]  # fmt: skip
    with open(run_dir.parent / f"{name}.train.log", "w", encoding="utf-8") as log:
        subprocess.run(train, check=True, stdout=log, stderr=subprocess.STDOUT)
    train_s = time.perf_counter() - started
    evaluate = [
        STREAM_APP, "evaluate", "--checkpoint", str(run_dir / "model.pt"), "--data", str(folder / "test.parquet"),
        "--labels", str(folder / "test_labels.csv"), "--stream-config", str(folder / "stream.yaml"),
        "--output", str(run_dir / "test.json"), "--plot", str(run_dir / "test.png"),
    ]  # fmt: skip
    subprocess.run(evaluate, check=True, stdout=subprocess.DEVNULL)
    result = json.loads((run_dir / "test.json").read_text())["current"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    lstm, base = result["lstm"]["accuracy"], result["baseline"]["accuracy"]
    return {
        "name": name,
        "lstm": lstm,
        "baseline": base,
        "dtw": PUBLISHED_1NN_DTW[name],
        "holds": lstm >= base and lstm >= PUBLISHED_1NN_DTW[name],
        "chosen": metrics["search"]["chosen"],
        "tried": sum(1 for t in metrics["search"]["trials"] if "skipped" not in t),
        "train_s": round(train_s),
        "n_test": result["n"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"some of {', '.join(DATASETS)} (default: all five)")
    parser.add_argument("--out", type=Path, default=Path("runs/uea-bench"))
    parser.add_argument("--budget-s", type=float, default=600.0, help="stream-app train --search-budget-s")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = []
    for name in args.names or list(DATASETS):
        row = run_one(name, args.out, args.budget_s, args.threads, args.seed)
        print(json.dumps(row), flush=True)
        rows.append(row)
    (args.out / "table.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print("\n| dataset | LSTM test accuracy | summary-stats logistic | 1-NN DTW (published) | holds | chosen | "
          "candidates run | train s |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['lstm']:.3f} | {r['baseline']:.3f} | {r['dtw']:.3f} | "
              f"{'yes' if r['holds'] else 'NO'} | {r['chosen']} | {r['tried']} | {r['train_s']} |")  # fmt: skip


if __name__ == "__main__":
    main()
