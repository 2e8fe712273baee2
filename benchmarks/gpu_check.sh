#!/usr/bin/env bash
# Everything a GPU machine should check, in one go: build lamfast there, run the test
# suite on the GPU, then the GPU benchmark suite. Logs and the result tables land in
# $OUT (default ./gpu-out); the tables also land in benchmarks/results/<gpu>/ as usual.
#
#   LAMFAST_COMMIT=$(git rev-parse --short HEAD) bash benchmarks/gpu_check.sh [python -m benchmarks args]
#
# One H100 (2026-11): install 15 s, tests 65 s; give `--only label model train attention`
# 5 min or more (the other benchmarks are CPU ones). Wheels for a missing astropy, fetched where pip
# works: pip download --no-deps --only-binary=:all: --python-version 3.12 --platform
# manylinux2014_x86_64 -d DIR astropy pyerfa astropy-iers-data
#
# Env: INSTALL=0, GPU_TESTS=0, BENCH=0 skip a phase; TEST_TIMEOUT / BENCH_TIMEOUT bound
# the tests and the benchmarks (s); TEST_WORKERS sets pytest-xdist's process count;
# WHEELS=DIR first installs the wheels in DIR into a private folder (a GPU image without
# astropy, say: the tests of LAM.predict and the readers need it).
# Runs from a copy of the working tree (no .git needed: LAMFAST_COMMIT stamps the tables).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-16}
PY=${PY:-python3}

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv >"$OUT/gpu.txt" 2>&1
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name())" >>"$OUT/gpu.txt" 2>&1
cat "$OUT/gpu.txt"

if [[ -n "${WHEELS:-}" ]]; then
    SITE=$(mktemp -d)
    $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl || exit 1
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi

# The build a user makes: the wheel's package, not the source folder.
if [[ "${INSTALL:-1}" == 1 ]]; then
    start=$SECONDS
    $PY -m pip install -q --no-build-isolation --no-deps . >"$OUT/install.log" 2>&1 \
        || { tail -40 "$OUT/install.log"; exit 1; }
    echo "installed in $((SECONDS - start)) s"
fi
# -P keeps the source folder off sys.path, so `lamfast` is the installed one; benchmarks/
# is reached through a folder that holds only it.
SHIM=$(mktemp -d)
ln -s "$PWD/benchmarks" "$SHIM/benchmarks"

if [[ "${GPU_TESTS:-1}" == 1 ]]; then
    start=$SECONDS
    timeout "${TEST_TIMEOUT:-300}" $PY -P -m pytest -q -p no:cacheprovider -n "${TEST_WORKERS:-8}" --continue-on-collection-errors \
        tests >"$OUT/tests.log" 2>&1
    echo "tests: exit $? in $((SECONDS - start)) s"; tail -25 "$OUT/tests.log"
fi

if [[ "${BENCH:-1}" == 1 ]]; then
    start=$SECONDS
    PYTHONPATH=$SHIM${PYTHONPATH:+:$PYTHONPATH} timeout "${BENCH_TIMEOUT:-400}" $PY -P -m benchmarks "$@" >>"$OUT/bench.log" 2>&1
    echo "benchmarks: exit $? in $((SECONDS - start)) s"
    grep -E "^\(|Traceback|Error" "$OUT/bench.log" | tail -20
    tar -czf "$OUT/results.tar.gz" -C benchmarks results
fi
