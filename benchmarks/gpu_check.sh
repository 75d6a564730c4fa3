#!/usr/bin/env bash
# The device check of issue 5 as one short script: the gpu-marked tests, then
# benchmarks (3) and (1) on the CuPy backend, each under its own time limit
# (about 10 minutes in all at most). Run from the repository root on a machine
# with CuPy and a CUDA device; rfdiff need not be installed (PYTHONPATH is set
# here). Logs and JSON go to $OUT (default ./gpu_results).
#
#   bash benchmarks/gpu_check.sh                       # on the GPU machine
#   BACKEND=numpy QUICK=1 bash benchmarks/gpu_check.sh # the same steps on a CPU, CI size
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu_results}
backend=${BACKEND:-cupy}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
status=0
step() {   # step NAME SECONDS COMMAND...: run, log to $out/NAME.log, remember a failure
    local name=$1 limit=$2
    shift 2
    echo "== $name (limit ${limit}s): $*"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    local rc=$?
    tail -n 40 "$out/$name.log"
    echo "== $name: exit $rc"
    [ "$rc" -eq 0 ] || status=1
}

step info 60 "$py" -m rfdiff.cli info
if [ "$backend" = cupy ]; then
    step pytest_gpu 240 "$py" -m pytest -m gpu -n 0 -q -p no:cacheprovider tests/test_backend.py
fi
if [ -n "${QUICK:-}" ]; then
    step kernels 600 "$py" benchmarks/kernels.py --quick --backend "$backend" --json "$out/kernels.json"
    step trajectory 600 "$py" benchmarks/trajectory.py --quick --backend "$backend" \
        --metrics train_loss,population_loss --json "$out/trajectory.json"
else
    step kernels 240 "$py" benchmarks/kernels.py --backend "$backend" --json "$out/kernels.json"
    # the GPU target: m = 32768 flow + 64-tau loss curve under 30 s on one H100
    step trajectory 300 "$py" benchmarks/trajectory.py --backend "$backend" --m 32768 \
        --metrics train_loss,population_loss --json "$out/trajectory.json"
fi
exit $status
