#!/usr/bin/env bash
# Run the test suite against an AddressSanitizer + UndefinedBehaviorSanitizer build of nnkernels._core.
#
#   tests/sanitize.sh                          # the whole suite
#   tests/sanitize.sh tests/test_losses.py -k labels   # any pytest selection / options
#
# Builds (CPU only) into build/asan, assembles a package copy in build/asan/pkg/nnkernels (the
# Python sources of python/nnkernels plus the sanitized module; the worktree's own module is left
# alone) and runs pytest with that copy first on PYTHONPATH. The interpreter is not instrumented,
# so GCC's runtimes are preloaded (libasan must come first in the process's library list).
# Every report ends the process it happens in (halt_on_error, -fno-sanitize-recover): in pytest
# itself the run aborts (non-zero exit); subprocesses inherit the environment, so a report there
# fails the test that started it (the bad-input workers report the case that was running).
#
# Options: detect_leaks=0 (CPython keeps interned objects alive at exit by design);
# allocator_may_return_null=1 (tests that ask for absurd allocations expect MemoryError, not an
# ASan abort); halt_on_error / -fno-sanitize-recover=undefined: the first report ends the process.
# torch (an optional import of some tests) loads fine under the preloaded runtime; CPython's own
# OpenMP-free paths and libgomp are not instrumented, so only nnkernels' code is checked.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=$root/build/asan

export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$root} CCACHE_NOHASHDIR=1
launcher=()
if command -v ccache >/dev/null 2>&1; then launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache); fi
san="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g"
generator=()
if command -v ninja >/dev/null 2>&1; then generator=(-G Ninja); fi

# RelWithDebInfo: pybind11 neither strips the module (file:line in reports) nor links it with LTO
# (slow with the sanitizers); the project's own -O3 still applies to every source.
echo "== sanitize: build ($build)" >&2
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DNNKERNELS_CUDA=OFF \
  -DNNKERNELS_DEV_INPLACE=OFF "${launcher[@]}" \
  -DCMAKE_CXX_FLAGS="$san" -DCMAKE_SHARED_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DCMAKE_MODULE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -Dpybind11_DIR="$(python -m pybind11 --cmakedir)" >"$build.configure.log" 2>&1 ||
  { cat "$build.configure.log" >&2; exit 1; }
cmake --build "$build" >&2

pkg=$build/pkg/nnkernels
rm -rf "$build/pkg"
mkdir -p "$pkg"
# The Python sources (and bench, which the dev build links into the package), not the dev module.
(cd python/nnkernels && tar --exclude='_core*.so' --exclude='__pycache__' --exclude='./bench' -cf - .) | (cd "$pkg" && tar -xf -)
(cd bench && tar --exclude='__pycache__' -cf - .) | (mkdir -p "$pkg/bench" && cd "$pkg/bench" && tar -xf -)
module=$(find "$build" -maxdepth 1 -name '_core*.so' | head -n 1)
[ -n "$module" ] || { echo "sanitize: no _core module in $build" >&2; exit 1; }
cp "$module" "$pkg/"

preload="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
export LD_PRELOAD="$preload${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONPATH="$build/pkg${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

python -c "import nnkernels, sys; assert nnkernels.__file__.startswith('$build/pkg'), nnkernels.__file__" \
  || { echo "sanitize: the sanitized package is not the one imported" >&2; exit 1; }

echo "== sanitize: pytest ${*:-(whole suite)}" >&2
start=$(date +%s)
rc=0
python -m pytest -q "$@" || rc=$?
echo "== sanitize: pytest exit $rc after $(( $(date +%s) - start )) s" >&2
exit "$rc"
