#!/usr/bin/env bash
# The CUDA checks of issue 16, in one run on one GPU (budget: 8 minutes).
#
#   benchmarks/gpu.sh OUT            run every step, outputs under OUT/
#   benchmarks/gpu.sh --dry-run OUT  print the commands only (runs nothing, needs no GPU)
#   benchmarks/gpu.sh --cpu OUT      the same steps on the CPU with gloo, a short benchmark
#                                    (checks the script itself where no GPU is at hand)
#
# Steps (each under its own time limit; the limits add up to 8 minutes):
#   1. environment     nvidia-smi and torch's view of CUDA              -> OUT/env.txt
#   2. device tests    the suite's device tests with --robust-device=cuda -> OUT/device-tests.{log,xml}
#   3. amp             amp=True on CUDA: float16 attack, float32 clean pass and re-verification
#                                                                       -> OUT/amp.{log,xml}
#   4. benchmark       benchmarks/bench_attacks.py --device cuda (times and ratios)
#                                                                       -> OUT/bench-cuda.md
#   5. NCCL            a world-size-1 NCCL process group under torchrun -> OUT/nccl.log
#
# Every step runs even when an earlier one failed; the script exits 1 when any failed and
# prints a summary (also in OUT/summary.txt). Run from anywhere; PYTHON picks the
# interpreter (default: python). The CUDA paths have never run on a GPU: see
# benchmarks/README.md.
set -uo pipefail

usage() {
    echo "usage: $0 [--dry-run] OUT" >&2
    exit 2
}

DRY=0
CPU=0
OUT=""
for arg in "$@"; do
    case "$arg" in
        --dry-run) DRY=1 ;;
        --cpu) CPU=1 ;;
        -h | --help) usage ;;
        -*) echo "unknown option: $arg" >&2; usage ;;
        *) [ -z "$OUT" ] || usage; OUT="$arg" ;;
    esac
done
[ -n "$OUT" ] || usage

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
cd "$ROOT" || exit 2
mkdir -p "$OUT" || exit 2
OUT="$(cd "$OUT" && pwd)"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"

# The test files that touch the device: tests/unit/test_device.py needs --robust-device and
# fails there when CUDA is absent; the others run on the default device ('auto': CUDA here).
DEVICE_TESTS=(
    tests/unit/test_device.py
    tests/unit/test_memory_backoff.py
    tests/unit/test_decide_early.py
    tests/unit/test_attacks_digits.py
    tests/unit/test_streaming.py
)
DEVICE=cuda
BACKEND=nccl
BENCH=(--threads 0 --repeats 5)
if [ "$CPU" = 1 ]; then
    DEVICE=cpu
    BACKEND=gloo
    BENCH=(--threads 0 --repeats 1 --workloads digits --only FGSM PGD-10)
fi
PYTEST=("$PY" -m pytest -p no:randomly -p no:cacheprovider -q -rs --robust-device=$DEVICE)

declare -a RESULTS=()
FAILED=0

# step NAME LIMIT_S LOG COMMAND...: print, run under `timeout`, log stdout+stderr to OUT/LOG.
step() {
    local name="$1" limit="$2" log="$3"
    shift 3
    echo "== $name (limit ${limit}s)"
    echo "+ $*"
    if [ "$DRY" = 1 ]; then
        return 0
    fi
    local start=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@" >"$OUT/$log" 2>&1
    rc=$?
    tail -n 30 "$OUT/$log"
    local took=$((SECONDS - start))
    if [ "$rc" = 0 ]; then
        RESULTS+=("ok      $name (${took}s)")
    else
        [ "$rc" = 124 ] && rc="124, timed out"
        RESULTS+=("FAILED  $name (exit $rc, ${took}s, see $OUT/$log)")
        FAILED=1
    fi
}

step environment 30 env.txt bash -c \
    "nvidia-smi || [ $CPU = 1 ]; $PY -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), torch.cuda.device_count(), torch.cuda.is_available() and torch.cuda.get_device_name(0))'"
step "device tests" 150 device-tests.log \
    "${PYTEST[@]}" --junitxml="$OUT/device-tests.xml" -k "not amp" "${DEVICE_TESTS[@]}"
step amp 60 amp.log \
    "${PYTEST[@]}" --junitxml="$OUT/amp.xml" -k amp tests/unit/test_device.py tests/unit/test_amp.py
step benchmark 210 bench-cuda.md \
    "$PY" benchmarks/bench_attacks.py --device "$DEVICE" "${BENCH[@]}"
step "$BACKEND" 60 nccl.log \
    "$PY" -m torch.distributed.run --standalone --nproc_per_node 1 \
    benchmarks/nccl_check.py --backend "$BACKEND" --device "$DEVICE"

if [ "$DRY" = 1 ]; then
    echo "dry run: nothing was run; outputs would go to $OUT"
    exit 0
fi
{
    echo "benchmarks/gpu.sh summary ($(date -u '+%Y-%m-%d %H:%M UTC'), ${SECONDS}s in all)"
    printf '%s\n' "${RESULTS[@]}"
} | tee "$OUT/summary.txt"
exit "$FAILED"
