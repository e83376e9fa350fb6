// Host-callable launchers of the CUDA optimizer kernels (csrc/cuda/optimizers.cu).
#pragma once
#include <cstdint>

#include "cpu/optimizers.hpp"

namespace nk {
namespace cuda {
// Multi-tensor apply: ONE kernel launch updates every tensor of the list.
// ptrs: ntensors x nops device pointers (row per tensor, operands in the order of
// cpu/optimizers.hpp for `op`), sizes: elements per tensor; dtype 0 = f32, 1 = f64.
// Runs on `stream` (cudaStream_t as integer). Throws std::runtime_error on CUDA errors.
void launch_multi_tensor(int op, int dtype, const uintptr_t* ptrs, const int64_t* sizes, int64_t ntensors,
                         const OptimHyper& h, uintptr_t stream);
// Global L2 norm (float64, deterministic two-stage reduction) and in-place scaling when it
// exceeds max_norm; returns the norm (synchronises the stream).
double clip_grad_norm(int dtype, const uintptr_t* ptrs, const int64_t* sizes, int64_t ntensors, double max_norm,
                      uintptr_t stream);
}  // namespace cuda
}  // namespace nk
