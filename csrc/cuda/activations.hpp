// Host-callable launchers of the CUDA activation kernels (csrc/cuda/activations.cu).
#pragma once
#include <cstdint>

namespace nk {
namespace cuda {
// ins: device pointers (1 for forward, 2 for backward: dout and x or y); dtype 0 = f32, 1 = f64.
// Runs on `stream` (a cudaStream_t as integer; 0 = legacy default stream). Throws std::runtime_error on CUDA errors.
void launch_activation(int op, int dtype, const uintptr_t* ins, int n_in, uintptr_t out, int64_t n, double slope,
                       uintptr_t stream);
}  // namespace cuda
}  // namespace nk
