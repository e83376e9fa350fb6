// Host-callable launchers of the CUDA preprocessing kernels (csrc/cuda/preprocessing.cu).
// Matrices are C-contiguous (rows x cols) device arrays; dtype 0 = float32, 1 = float64.
#pragma once
#include <cstdint>

namespace nk {
namespace cuda {
// Column mean, M2 (sum of squared deviations), min, max (host outputs, cols each); synchronises the stream.
void col_stats(uintptr_t x, int64_t rows, int64_t cols, int dtype, double* mean, double* m2, double* mn, double* mx,
               uintptr_t stream);
// y = (x - a[j]) * s[j] + c[j] (host parameter vectors of cols values).
void affine(uintptr_t x, uintptr_t y, int64_t rows, int64_t cols, int dtype, const double* a, const double* s,
            const double* c, uintptr_t stream);
// Rows divided by their norm (0 -> 1); norms copied to the host (rows values); synchronises the stream.
void normalize(uintptr_t x, uintptr_t y, int64_t rows, int64_t cols, int dtype, int norm, double* norms,
               uintptr_t stream);
}  // namespace cuda
}  // namespace nk
