#!/usr/bin/env bash
# GPU benchmark: the scoring benchmark (raw forward vs the service's scoring path: Redis fetch, pack,
# forward, serialise) on a CUDA device in float32, without and with bf16 autocast; the same table as
# `make bench-scoring`, also written into docs/BENCHMARKS.md §4 (blocks gpu-none, gpu-bf16) with the card's name.
# Needs the local Redis (stream-app devstack up) for the scoring path.
#
#   bench/gpu.sh                 # on a machine with a CUDA GPU
#   bench/gpu.sh --allow-cpu     # no GPU: run the same steps on CPU (checks the script, numbers are CPU's)
#   REPEATS=3 bench/gpu.sh ...   # fewer repeats
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
REPEATS=${REPEATS:-7}
OUT=${OUT:-bench-gpu-results}
device=cuda
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    if [[ "${1:-}" == "--allow-cpu" ]]; then
        echo "gpu.sh: no CUDA device; --allow-cpu given, running on CPU (these are not GPU numbers)" >&2
        device=cpu
    else
        echo "gpu.sh: no CUDA device (torch.cuda.is_available() is False); nothing run." >&2
        echo "        run it on a machine with a GPU, or pass --allow-cpu to check the script on CPU." >&2
        exit 2
    fi
fi
if ! .venv/bin/stream-app devstack status >/dev/null 2>&1; then
    .venv/bin/stream-app devstack up
fi
mkdir -p "$OUT"
"$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")' | tee "$OUT/device.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee -a "$OUT/device.txt" || true
doc=()
[[ "$device" == cuda ]] && doc=(--doc)  # a CPU check run leaves docs/BENCHMARKS.md alone
for autocast in none bf16; do
    echo "== device=$device precision=float32 autocast=$autocast"
    "$PY" bench/bench_scoring.py --device "$device" --precisions float32 --autocast "$autocast" \
        --repeats "$REPEATS" --json "$OUT/scoring-$device-$autocast.json" "${doc[@]}" \
        | tee "$OUT/scoring-$device-$autocast.txt"
done
echo "results in $OUT/"
