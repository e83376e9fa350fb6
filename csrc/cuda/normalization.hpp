// Host-callable launchers of the CUDA normalization kernels (csrc/cuda/normalization.cu).
// All pointers are device pointers of contiguous arrays; dtype 0 = float32, 1 = float64;
// act: 0 none, 1 relu, 2 leaky_relu. Launched on `stream`; throw std::runtime_error on CUDA errors.
#pragma once
#include <cstdint>

namespace nk {
namespace cuda {
// Layer norm over rows of length d. gamma/beta: d values (never null).
void layernorm_forward(int dtype, uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, uintptr_t mean,
                       uintptr_t rstd, int64_t rows, int64_t d, double eps, int act, double slope, uintptr_t stream);
// Workspace (doubles) for layernorm_backward.
int64_t layernorm_backward_workspace(int64_t rows, int64_t d);
// dx; dgamma/dbeta (d values each) via per-block partials reduced in a second kernel (deterministic).
void layernorm_backward(int dtype, uintptr_t dout, uintptr_t x, uintptr_t y, uintptr_t gamma, uintptr_t mean,
                        uintptr_t rstd, uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta, uintptr_t work, int64_t rows,
                        int64_t d, int act, double slope, uintptr_t stream);
// Workspace (doubles) of one batch-norm reduction (stats: x1, backward reduce: x1 as well).
int64_t batchnorm_workspace(int64_t n, int64_t c, int64_t s);
// Per-channel mean and m2 (double, C values each) of x (n, c, s).
void batchnorm_stats(int dtype, uintptr_t x, int64_t n, int64_t c, int64_t s, uintptr_t work, uintptr_t mean,
                     uintptr_t m2, uintptr_t stream);
// y = act(((x - mh) - ml) * scale + shift), params: 4 T values per channel [mh, ml, scale, shift].
void batchnorm_apply(int dtype, uintptr_t x, uintptr_t y, int64_t n, int64_t c, int64_t s, uintptr_t params, int act,
                     double slope, uintptr_t stream);
// out3 (3 doubles per channel): sum g, sum g*(x - m), sum (x - m); m: C values of type T.
void batchnorm_backward_reduce(int dtype, uintptr_t dout, uintptr_t x, uintptr_t y, uintptr_t mean, int64_t n,
                               int64_t c, int64_t s, uintptr_t work, uintptr_t out3, int act, double slope,
                               uintptr_t stream);
// dx = A*g + K*((x - mh) - ml) + B, params: 5 T values per channel [mh, ml, A, K, B].
void batchnorm_backward_apply(int dtype, uintptr_t dout, uintptr_t x, uintptr_t y, uintptr_t dx, int64_t n, int64_t c,
                              int64_t s, uintptr_t params, int act, double slope, uintptr_t stream);
}  // namespace cuda
}  // namespace nk
