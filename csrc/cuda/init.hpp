// Host-callable launcher of the CUDA weight-initialisation kernel (csrc/cuda/init.cu).
#pragma once
#include <cstdint>

#include "cpu/init.hpp"

namespace nk {
namespace cuda {
// Fill n contiguous elements at device pointer `out` (dtype 0 = float32, 1 = float64) with the
// same Philox numbers as the CPU kernel. Throws std::runtime_error on CUDA errors.
void launch_init_fill(uintptr_t out, int64_t n, int dtype, const InitParams& p, uintptr_t stream);
}  // namespace cuda
}  // namespace nk
