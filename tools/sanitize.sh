#!/usr/bin/env bash
# Build lamfast's C++ core with AddressSanitizer + UndefinedBehaviorSanitizer and run the
# tests that exercise it against that build (issue 21).
#
#   tools/sanitize.sh                 # build + the short run (CI: a few minutes on 2 cores)
#   tools/sanitize.sh -k xp           # extra pytest arguments are passed on
#   LAMFAST_FUZZ_EXAMPLES=100000 tools/sanitize.sh tests/test_fuzz.py   # a long fuzz run
#
# The sanitized module is built in its own folder ($LAMFAST_SANITIZE_DIR, default
# build/sanitize/), never over lamfast/_core*.so: a temporary copy of the package gets
# the sanitized _core and is put first on PYTHONPATH. Python itself is not sanitized, so
# the ASan runtime is preloaded; leak checking is off (CPython keeps memory by design).
# Any sanitizer report aborts the process, so the run fails.
#
# Environment: PYTHON (default: python3 on PATH), CXX (default g++), CMAKE_GENERATOR.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
build=${LAMFAST_SANITIZE_DIR:-$root/build/sanitize}
cxx=${CXX:-g++}

# ---- build ------------------------------------------------------------------------------
pybind11_dir=$("$python" -c "import pybind11; print(pybind11.get_cmake_dir())")
generator=()
command -v ninja >/dev/null && generator=(-G "${CMAKE_GENERATOR:-Ninja}")
if [ ! -f "$build/CMakeCache.txt" ]; then
  cmake -S "$root" -B "$build" "${generator[@]}" -DLAMFAST_SANITIZE=ON \
        -DCMAKE_CXX_COMPILER="$cxx" -DPython_EXECUTABLE="$(command -v "$python")" \
        -Dpybind11_DIR="$pybind11_dir" >/dev/null
fi
cmake --build "$build" -j "${LAMFAST_BUILD_JOBS:-$(nproc)}"
so=$(ls "$build"/_core*.so)

# ---- a copy of the package with the sanitized core --------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/lamfast-sanitize.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp -r "$root/lamfast" "$tmp/lamfast"
rm -f "$tmp"/lamfast/_core*.so
cp "$so" "$tmp/lamfast/"
find "$tmp/lamfast" -name __pycache__ -prune -exec rm -rf {} +

# ---- run ----------------------------------------------------------------------------------
runtime=$("$cxx" -print-file-name=libasan.so)
ubsan=$("$cxx" -print-file-name=libubsan.so)
preload=$runtime
[ -f "$ubsan" ] && [ "$ubsan" != libubsan.so ] && preload="$runtime:$ubsan"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=1:detect_stack_use_after_return=0:allocator_may_return_null=1:halt_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export LAMFAST_SANITIZED=1   # tests that need too much memory or time under ASan skip
# The C++-touching tests (tokenizer, sampler, XP text parsing, cross-match, CPU
# attention, fuzz and property tests), unless pytest arguments name others.
tests=(tests/test_tokenizer.py tests/test_sampler.py tests/test_xp_archive.py
       tests/test_xmatch.py tests/test_attention_cpu.py tests/test_properties.py
       tests/test_fuzz.py)
args=("$@")
has_path=0
for a in "${args[@]}"; do [[ "$a" == tests/* ]] && has_path=1; done
[ "$has_path" = 1 ] || args=("${tests[@]}" "${args[@]}")
# -P: the working directory (the source tree, holding the unsanitized lamfast) is not put
# first on sys.path; the run starts in the copy's folder all the same.
cd "$tmp"
for i in "${!args[@]}"; do [[ "${args[$i]}" == tests/* ]] && args[$i]="$root/${args[$i]}"; done
# Checks that the copy, not the source tree, is imported, and that it is sanitized.
LD_PRELOAD="$preload" PYTHONPATH="$tmp${PYTHONPATH:+:$PYTHONPATH}" "$python" -P -c "
import sys, lamfast._core as c
assert c.__file__.startswith('$tmp'), c.__file__
print('sanitized core:', c.__file__, file=sys.stderr)"
LD_PRELOAD="$preload" PYTHONPATH="$tmp${PYTHONPATH:+:$PYTHONPATH}" \
  "$python" -P -m pytest -q -p no:cacheprovider --rootdir "$root" -c "$root/pyproject.toml" \
  "${args[@]}"
