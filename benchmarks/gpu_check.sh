#!/usr/bin/env bash
# Everything a GPU machine should check, in ONE run of under 8 minutes (a GPU loan is
# 15 minutes of one H200, start-up and transfers included): build lamfast there, run the
# test suite on the GPU, then the full-size GPU benchmarks, each as a phase of its own
# with a time budget. A phase that fails or runs out of time costs only its own rows: no
# `set -e`, every benchmark rewrites its table after each case, and the overall deadline
# shortens later phases rather than losing them.
#
#   LAMFAST_COMMIT=$(git rev-parse --short HEAD) bash benchmarks/gpu_check.sh
#   DRY=1 bash benchmarks/gpu_check.sh      # or --dry: the same phases on a CPU, in ~2 min
#
# Phases and budgets (s), from one H100 (2026-11: install 15 s, tests 65 s with 8 workers):
#   env 10 | install 45 | tests 90 | attention 105 | model 65 | label 95 | train 40 |
#   [extra 30, EXTRA=cmd, only with time left] | summary 10 | pack 5   = 465 s < 8 min
#   attention  1e5 and 1e6 sets; encoder sets of 1-64, decoder 1-6 queries x 1-64 keys;
#              heads 16x8 8x16 4x32; bf16 then fp16; fwd and fwd+bwd; lamfast-triton vs
#              SDPA (math, efficient, cudnn), nested SDPA, FlexAttention
#   model      lam-2024 at 8,192 and 65,536 stars per batch: lamfast vs stock eager and
#              stock under torch.compile, fp32 and bf16
#   label      10M stars Parquet file to file (stock pipeline: the first 1M), stage seconds,
#              model share of the wall and mean GPU utilisation
#   train      lam-2024 optimiser steps at batch 1024 and 4096
#
# $OUT (default ./gpu-out) receives at most 8 files, none over 16 MiB: gpu.txt (machine,
# versions), phases.txt (each phase's status and seconds), install.log, tests.log,
# bench.log, results.tar.gz (the markdown and CSV tables, nothing else). The tables are
# written in a scratch copy of benchmarks/ and, except in a dry run, copied to
# benchmarks/results/<device>/ as usual.
#
# Env: DRY=1 (or --dry): tiny sizes on the CPU, the Triton kernels under TRITON_INTERPRET=1,
# the same benchmark code and table writers; what needs CUDA is listed as skipped in the
# rows, the build is replaced by an import check and the tests by DRY_TESTS.
# INSTALL=0, GPU_TESTS=0, BENCH=0 skip phases; PHASES="attention label" runs just those
# benchmark phases; BUDGET_<phase>=S overrides a phase's budget, TOTAL_BUDGET the overall
# deadline (470 s); BENCH_BUDGET_<phase>=S the --budget that phase's benchmark gets;
# FAIL_PHASE=<phase> makes that phase fail on purpose (tests of this
# script); TEST_WORKERS sets pytest-xdist's process count (if installed); EXTRA="cmd" runs
# one more phase (e.g. a tuning sweep) when time is left; WHEELS=DIR first installs the wheels in DIR into a
# private folder (a GPU image without astropy, say: the tests of LAM.predict and the readers
# need it). Wheels for a missing astropy, fetched where pip works: pip download --no-deps
# --only-binary=:all: --python-version 3.12 --platform manylinux2014_x86_64 -d DIR astropy
# pyerfa astropy-iers-data
# Runs from a copy of the working tree (no .git needed: LAMFAST_COMMIT stamps the tables).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
DRY=${DRY:-0}
for arg in "$@"; do [[ "$arg" == --dry ]] && DRY=1; done
OUT=${OUT:-$ROOT/gpu-out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-16}
export LAMFAST_GPU_CHECK=1  # tests/test_gpu_check.py, run by the tests phase, skips itself
PY=${PY:-python3}
TOTAL_BUDGET=${TOTAL_BUDGET:-470}
T0=$SECONDS
PHASES_FILE=$OUT/phases.txt
: >"$PHASES_FILE"
if [[ "$DRY" == 1 ]]; then
    export TRITON_INTERPRET=1
    DEVICE=cpu
    echo "DRY RUN: tiny sizes on the CPU, Triton interpreted; times mean nothing" | tee -a "$PHASES_FILE"
else
    DEVICE=cuda
fi

# phase NAME BUDGET LOG CMD...: run CMD (a program, or a function exported with export -f)
# under min(BUDGET, time left), output appended to LOG; an argument @BUDGET@ becomes 80 % of
# that limit (the benchmarks' own --budget, so they stop before the timeout kills them), or
# BENCH_BUDGET_<phase> seconds where that is set (the dry run's test: a budget that runs out
# on any machine, however fast).
# Prints and records "phase NAME ok|failed (exit N)|timed out|skipped  S s".
phase() {
    local name=$1 budget=$2 log=$3
    shift 3
    local override="BUDGET_$name"
    budget=${!override:-$budget}
    local left=$((TOTAL_BUDGET - (SECONDS - T0)))
    local limit=$((budget < left ? budget : left))
    local start=$SECONDS rc status
    if ((limit < 5)); then
        status="skipped (overall budget of ${TOTAL_BUDGET} s spent)"
    else
        echo "=== $name (budget ${limit} s) ===" >>"$log"
        if [[ "${FAIL_PHASE:-}" == "$name" ]]; then
            echo "failing on purpose (FAIL_PHASE=$name)" >>"$log"
            rc=3
        else
            local args=() a own="BENCH_BUDGET_$name"
            local bench_budget=${!own:-$((limit * 8 / 10))}
            for a in "$@"; do args+=("${a//@BUDGET@/$bench_budget}"); done
            if declare -F "$1" >/dev/null; then args=(bash -c '"$@"' _ "${args[@]}"); fi
            timeout -k 10 "$limit" "${args[@]}" >>"$log" 2>&1
            rc=$?
        fi
        case $rc in
            0) status=ok ;;
            124 | 137) status="timed out" ;;
            *) status="failed (exit $rc)" ;;
        esac
    fi
    printf 'phase %-10s %-28s %4d s (budget %d s, %d s since start)\n' "$name" "$status" \
        $((SECONDS - start)) "$limit" $((SECONDS - T0)) | tee -a "$PHASES_FILE"
}

# ---- env: the machine and the versions --------------------------------------------------
env_info() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
    else
        echo "nvidia-smi: not found${DRY:+ (dry run: DRY=$DRY)}"
    fi
    $PY -c "import sys, torch, triton; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no CUDA device')"
    echo "commit ${LAMFAST_COMMIT:-unknown} | dry $DRY | nproc $(nproc)"
}
export -f env_info
export PY DRY OUT ROOT
phase env 10 "$OUT/gpu.txt" env_info
cat "$OUT/gpu.txt"

if [[ -n "${WHEELS:-}" ]]; then
    SITE=$(mktemp -d)
    $PY -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl \
        || echo "WHEELS: installing $WHEELS failed" | tee -a "$PHASES_FILE"
    export PYTHONPATH=$SITE${PYTHONPATH:+:$PYTHONPATH}
fi

# ---- install: the build a user makes (the wheel's package, not the source folder) -------
if [[ "$DRY" == 1 ]] && compgen -G "$ROOT/lamfast/_core*.so" >/dev/null; then
    # a checkout built in place (cmake): the dry run checks this code, not an older install
    export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
fi
if [[ "${INSTALL:-1}" == 1 ]]; then
    if [[ "$DRY" == 1 ]]; then  # a build takes minutes on 2 cores: check what is importable
        phase install 45 "$OUT/install.log" $PY -P -c "import lamfast, lamfast._core; print('dry: build skipped; lamfast', lamfast.__version__, 'from', lamfast.__file__)"
    else
        phase install 45 "$OUT/install.log" $PY -m pip install -q --no-build-isolation --no-deps .
    fi
    tail -5 "$OUT/install.log"
fi

# -P keeps the source folder off sys.path, so `lamfast` is the installed one; benchmarks/
# runs from a scratch copy, so its results/ (benchmarks.common.RESULTS, beside the code)
# is a fresh folder whose tables are this run's only.
WORK=$(mktemp -d)
mkdir "$WORK/benchmarks"
cp "$ROOT"/benchmarks/*.py "$WORK/benchmarks/"
RESULTS=$WORK/benchmarks/results
export WORK RESULTS
BENCH_PY=(env PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}" $PY -P -m)

# ---- tests: the suite on the GPU (dry: a small selection) -------------------------------
if [[ "${GPU_TESTS:-1}" == 1 ]]; then
    XDIST=()
    if $PY -c "import xdist" 2>/dev/null && [[ "$DRY" != 1 ]]; then XDIST=(-n "${TEST_WORKERS:-8}"); fi
    if [[ "$DRY" == 1 ]]; then
        read -r -a SELECTION <<<"${DRY_TESTS:-tests/test_benchmark_plumbing.py -k write_table}"
    else
        SELECTION=(tests --ignore=tests/test_gpu_check.py)
    fi
    phase tests 90 "$OUT/tests.log" $PY -P -m pytest -q -p no:cacheprovider "${XDIST[@]}" \
        --continue-on-collection-errors "${SELECTION[@]}"
    tail -15 "$OUT/tests.log"
fi

# ---- benchmarks: one phase each, each stops itself a little before its budget ----------
bench() {  # bench NAME ARGS...: the command line of benchmarks/bench_NAME.py, with a --budget
    local name=$1
    shift
    echo "${BENCH_PY[@]}" "benchmarks.bench_$name" "$@" --budget @BUDGET@
}
wanted() { [[ -z "${PHASES:-}" || " $PHASES " == *" $1 "* ]]; }
if [[ "${BENCH:-1}" == 1 ]]; then
    if [[ "$DRY" == 1 ]]; then
        A_ATT=(--dry) A_MODEL=(--dry) A_LABEL=(--dry --stars 64) A_TRAIN=(--dry)
    else
        A_ATT=(--stars 100000 1000000 --dtypes bfloat16 float16 --workloads encoder decoder
               --heads 16x8 8x16 4x32)
        A_MODEL=(--presets lam-2024 --stars 8192 65536)
        A_LABEL=(--stars 10000000 --stock-stars 1000000 --repeats 1)
        A_TRAIN=(--presets lam-2024 --batch-size 1024 4096)
    fi
    wanted attention && phase attention 105 "$OUT/bench.log" $(bench attention "${A_ATT[@]}")
    wanted model && phase model 65 "$OUT/bench.log" $(bench model "${A_MODEL[@]}")
    # label has no --budget: its parts are few and long; its rows are saved as they come
    wanted label && phase label 95 "$OUT/bench.log" "${BENCH_PY[@]}" benchmarks.bench_label "${A_LABEL[@]}"
    wanted train && phase train 40 "$OUT/bench.log" $(bench train "${A_TRAIN[@]}")
    # Optional extra work with the time left (a Triton tile sweep, say): EXTRA="cmd args"
    if [[ -n "${EXTRA:-}" ]]; then TOTAL_BUDGET=$((TOTAL_BUDGET - 15)) phase extra 30 "$OUT/bench.log" $EXTRA; fi
    phase summary 10 "$OUT/bench.log" "${BENCH_PY[@]}" benchmarks --summarize --device "$DEVICE" \
        --only attention model label train
    grep -E "^phase|Traceback|Error" "$OUT/bench.log" | tail -20
fi

# ---- pack: the tables (markdown and CSV only) -------------------------------------------
pack() {
    [[ -d "$RESULTS" ]] || { echo "no tables were written"; return 1; }
    (cd "$RESULTS" && find . -type f \( -name '*.md' -o -name '*.csv' \) | sort) >"$WORK/tables.txt"
    tar -czf "$OUT/results.tar.gz" -C "$RESULTS" -T "$WORK/tables.txt"
    cat "$WORK/tables.txt"
    if [[ "$DRY" != 1 ]]; then  # the usual place, for a commit of the results
        (cd "$RESULTS" && while read -r f; do mkdir -p "$ROOT/benchmarks/results/$(dirname "$f")" &&
            cp "$f" "$ROOT/benchmarks/results/$f"; done <"$WORK/tables.txt")
    fi
}
export -f pack
phase pack 5 "$OUT/bench.log" pack
# Nothing over 16 MiB comes back: a runaway log keeps its first and last 7 MiB.
for f in "$OUT"/*; do
    if [[ -f "$f" && $(stat -c %s "$f") -gt $((15 * 1024 * 1024)) ]]; then
        { head -c $((7 * 1024 * 1024)) "$f"; printf '\n[... cut to fit 16 MiB ...]\n'; tail -c $((7 * 1024 * 1024)) "$f"; } >"$f.cut"
        mv "$f.cut" "$f"
    fi
done
echo "total $((SECONDS - T0)) s; files in $OUT: $(ls "$OUT" | tr '\n' ' ')" | tee -a "$PHASES_FILE"
rm -rf "$WORK"
# exit status: 0 only if every phase was ok
! grep -qE "^phase .* (failed|timed out)" "$PHASES_FILE"
