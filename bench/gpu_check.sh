#!/usr/bin/env bash
# GPU check of nnkernels on any machine with CUDA: build for the GPU (sm_90 by default), the GPU
# tests, the benchmark with CPU and GPU rows, compute-sanitizer over every kernel, and a summary.
#
#   bench/gpu_check.sh OUTDIR          # from anywhere; writes everything into OUTDIR
#
# Environment: NNKERNELS_CUDA_ARCHITECTURES (default 90), NNKERNELS_GPU_CHECK_BUILD_DIR (default
# build/gpu-check), NNKERNELS_GPU_CHECK_BUDGET_S (default 540), NNKERNELS_GPU_CHECK_BENCH_ARGS
# (extra `python -m nnkernels bench` options), NNKERNELS_GPU_CHECK_SANITIZER_LIB (cupy or torch),
# PYTHON (default python3, else python). The steps and files: bench/_gpu_check.py.
set -euo pipefail
usage() {
  echo "usage: bench/gpu_check.sh OUTDIR"
  echo "Builds nnkernels with CUDA, runs the GPU tests, the benchmark and compute-sanitizer, and writes"
  echo "everything into OUTDIR (created if missing). See bench/_gpu_check.py."
}
if [ $# -eq 1 ] && { [ "$1" = -h ] || [ "$1" = --help ]; }; then usage; exit 0; fi
if [ $# -ne 1 ] || [ -z "$1" ] || [ "${1#-}" != "$1" ]; then usage >&2; exit 2; fi
case $1 in /*) out=$1 ;; *) out=$PWD/$1 ;; esac
cd "$(dirname "$0")/.."
python=${PYTHON:-$(command -v python3 || command -v python || true)}
[ -n "$python" ] || { echo "bench/gpu_check.sh: no python3 or python on PATH (or set PYTHON)" >&2; exit 2; }
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
exec "$python" -m bench._gpu_check run "$out"
