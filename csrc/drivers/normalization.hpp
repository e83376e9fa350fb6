// Normalization ops on any device: one function type per op, with the CPU driver
// (drivers/normalization.cpp, over the ISA tables of cpu/normalization.cpp) and the CUDA
// implementation (cuda/normalization.cu) registered on its stub. Operands arrive validated
// (bindings/normalization.cpp). The batch-norm per-channel parameter math is written once, below,
// for the host and the device (one layout: planar, p[k * C + c]).
//
// Operand conventions (pointers; null = absent):
//  * x, dout, y (the saved forward output of a fused activation): x's shape and dtype. CPU: any
//    layout that norm_rows_of accepts (the binding copies the others); CUDA: C-contiguous.
//  * per-channel / per-column vectors (gamma, beta, mean, rstd, running stats, sums): 1-D of the
//    channel count, any float dtype and stride, on x's device.
//  * results (y, dx, mean/rstd outputs, dgamma/dbeta, sums): C-contiguous, x's dtype unless noted.
//  * work: CUDA only, a float64 device array of the size the gpu_*_work functions give (allocated
//    by the caller's library in the binding: nothing is allocated, copied to or from the host or
//    synchronised inside an op).
#pragma once
#include <cstdint>
#include <limits>

#include "core/chan.hpp"
#include "core/dispatch.hpp"
#include "core/view.hpp"
#include "cpu/normalization.hpp"

namespace nk {

struct NormAct {
  int act = kNormActNone;  // NormActivation
  double slope = 0.01;     // negative_slope of leaky_relu
};

// Layer norm over the last axis of x; mean/rstd: x.shape[:-1].
struct LayerNormForwardArgs {
  const ArrayView *x, *gamma, *beta, *y, *mean, *rstd, *work;
  double eps;
  NormAct act;
};
// dgamma/dbeta present (d values) exactly when gamma is.
struct LayerNormBackwardArgs {
  const ArrayView *dout, *x, *y, *gamma, *mean, *rstd, *dx, *dgamma, *dbeta, *work;
  NormAct act;
};
// Batch norm of x (N, C, *spatial). Training: batch statistics, running stats (both or neither)
// updated in place; eval: normalised with the running statistics. mean/rstd: (C,) outputs.
// fresh_y: y's pages are new to the process (ordinary stores fault them in; see bn_apply).
struct BatchNormForwardArgs {
  const ArrayView *x, *gamma, *beta, *running_mean, *running_var, *y, *mean, *rstd, *work;
  bool training, unbiased, fresh_y;
  double momentum, eps;
  NormAct act;
};
// Per-channel mean and m2 (float64 (C,) outputs) of x.
struct BatchNormStatsArgs {
  const ArrayView *x, *mean, *m2, *work;
};
// Chan merge over parts, in part order: float64 counts (P,) or (P, C), means/m2s (P, C), any strides;
// outputs float64 (C,) mean/m2 and either, for per-channel counts, count (C,) or, for per-part
// counts, total (0-d: the sum of the counts). The binding checks host values first; a device
// cannot (a synchronising read), so there a channel with an invalid count or m2 comes out NaN.
struct BatchNormMergeArgs {
  const ArrayView *counts, *means, *m2s, *count, *mean, *m2, *total;
};
struct BatchNormNormalizeArgs {
  const ArrayView *x, *mean, *rstd, *gamma, *beta, *y, *work;
  bool fresh_y;
  NormAct act;
};
// dgamma/dbeta present exactly when gamma is.
struct BatchNormBackwardArgs {
  const ArrayView *dout, *x, *y, *gamma, *mean, *rstd, *dx, *dgamma, *dbeta, *work;
  bool fresh_dx;
  NormAct act;
};
struct BatchNormReduceArgs {
  const ArrayView *dout, *x, *y, *mean, *rstd, *sum_dout, *sum_dout_xhat, *work;
  NormAct act;
};
struct BatchNormElemtArgs {
  const ArrayView *dout, *x, *y, *gamma, *mean, *rstd, *sum_dout, *sum_dout_xhat, *dx, *work;
  double count;  // the global count (> 0)
  NormAct act;
};

using LayerNormForwardImpl = void (*)(const LayerNormForwardArgs&, const ExecContext&);
using LayerNormBackwardImpl = void (*)(const LayerNormBackwardArgs&, const ExecContext&);
using BatchNormForwardImpl = void (*)(const BatchNormForwardArgs&, const ExecContext&);
using BatchNormStatsImpl = void (*)(const BatchNormStatsArgs&, const ExecContext&);
using BatchNormMergeImpl = void (*)(const BatchNormMergeArgs&, const ExecContext&);
using BatchNormNormalizeImpl = void (*)(const BatchNormNormalizeArgs&, const ExecContext&);
using BatchNormBackwardImpl = void (*)(const BatchNormBackwardArgs&, const ExecContext&);
using BatchNormReduceImpl = void (*)(const BatchNormReduceArgs&, const ExecContext&);
using BatchNormElemtImpl = void (*)(const BatchNormElemtArgs&, const ExecContext&);

// x viewed as rows: the dimensions from first_inner on form a C-contiguous block (the row), the
// outer ones collapse into one row index with a constant row stride (in elements, to row_stride).
// The CPU kernels read such layouts directly; the binding copies any other.
bool norm_rows_of(const ArrayView& v, int first_inner, int64_t& row_stride);

// ---------------------------------------------------------------- CUDA workspaces and geometry
// Shared by the binding (which allocates the workspace) and cuda/normalization.cu (which lays it out).
constexpr int kNormGpuBlock = 256;
constexpr int64_t kNormGpuMaxParts = 128;  // row chunks of a batch-norm reduction
// Row chunks of a batch-norm reduction over n rows of s values per channel.
inline int64_t norm_gpu_bn_parts(int64_t n, int64_t s) {
  int64_t p = (n * s + 4 * kNormGpuBlock * 8 - 1) / (4 * kNormGpuBlock * 8);
  if (p < 1) p = 1;
  if (p > kNormGpuMaxParts) p = kNormGpuMaxParts;
  if (p > n) p = n < 1 ? 1 : n;
  return p;
}
// Row chunks of the layer-norm dgamma/dbeta reduction.
inline int64_t norm_gpu_ln_parts(int64_t rows) {
  const int64_t p = (rows + 255) / 256;
  return p < 1 ? 1 : (p > 256 ? 256 : p);
}
// float64 elements: layer norm forward (gamma, beta as T), backward (per-row residual, the
// partial dgamma/dbeta, gamma, mean, rstd as T), batch norm (partials of a reduction and eight
// values per channel).
inline int64_t norm_gpu_ln_forward_work(int64_t d) { return 2 * d; }
// Whether a vector is read by the layer-norm kernels as it is (a contiguous array of dtype dt
// that does not overlap `avoid`, the output); else it is converted into the workspace.
inline bool norm_vec_usable(const ArrayView* v, DType dt, const ArrayView* avoid) {
  return v && v->dtype == dt && (v->size <= 1 || v->strides[0] == 1) && !(avoid && may_overlap(*v, *avoid));
}
inline int64_t norm_gpu_ln_backward_work(int64_t rows, int64_t d) {
  return rows + 2 * norm_gpu_ln_parts(rows) * d + d + 2 * rows;
}
inline int64_t norm_gpu_bn_work(int64_t n, int64_t c, int64_t s) { return 3 * c * norm_gpu_bn_parts(n, s) + 16 * c; }

// ---------------------------------------------------------------- per-channel parameters (host and device)

// Forward parameters of channel c (planar, p[k * C + c]) from its mean, given as hi + lo (hi
// the part the kernels subtract, lo possibly 0), the T-rounded rstd, gamma and beta:
//   y = (x - mh) * scale + shift, mh = T(hi), scale = gamma * rstd, shift = beta - ml * scale,
// with ml = lo + (hi - mh) the rest of the mean folded into the shift (x - mh is exact for x
// near the mean: full precision at |mean| >> std).
template <class T>
NK_HOST_DEVICE inline void bn_forward_channel(double hi, double lo, T rstd, double gamma, double beta, T* p, int64_t C) {
  const T mh = T(hi);
  const double ml = lo + (hi - double(mh)), sc = gamma * double(rstd);
  p[0] = mh;
  p[C] = T(sc);
  p[2 * C] = T(beta - ml * sc);
}

// Backward parameters of channel c (planar) for dx = A*g + K*(x - mh) + B, from the mean
// (mh + ml, mh a T value), gamma, rstd, the sums sg = sum g and sgxh = sum g*xhat, and count:
// A = gamma*rstd, K = -A*rstd*sgxh/count, B = -A*sg/count - K*ml (ml folded in). Returns K in double.
template <class T>
NK_HOST_DEVICE inline double bn_elemt_channel(double mh, double ml, double gamma, double rstd, double sg, double sgxh,
                                              double count, T* p, int64_t C) {
  const double A = gamma * rstd, K = -A * rstd * sgxh / count;
  p[0] = T(mh);
  p[C] = T(A);
  p[2 * C] = T(K);
  p[3 * C] = T(-A * sg / count - K * ml);
  return K;
}

NK_HOST_DEVICE inline double norm_abs(double v) { return v < 0 ? -v : v; }

// Whether a channel's backward must be redone in a wider type: the block sums red3 = [sum g |
// sum g*(x - m) | sum (x - m)] overflowed (|x - m| * |g| near max), or the dx coefficient K left
// T's normal range (std beyond ~1e19 for float32: the xhat term of dx would be lost).
template <class T> NK_HOST_DEVICE inline bool bn_backward_wide(double s0, double s1, double s2, double K) {
  const double aK = norm_abs(K);
  return !(norm_abs(s0) + norm_abs(s1) + norm_abs(s2) <= std::numeric_limits<double>::max()) ||
         (aK != 0 && (aK < double(std::numeric_limits<T>::min()) || aK > double(std::numeric_limits<T>::max())));
}

// The running-statistics update: running = (1 - momentum) * running + momentum * batch.
NK_HOST_DEVICE inline double bn_running_update(double running, double momentum, double batch) {
  return (1.0 - momentum) * running + momentum * batch;
}

}  // namespace nk

NK_DECLARE_DISPATCH(LayerNormForwardImpl, layernorm_forward_stub)
NK_DECLARE_DISPATCH(LayerNormBackwardImpl, layernorm_backward_stub)
NK_DECLARE_DISPATCH(BatchNormForwardImpl, batchnorm_forward_stub)
NK_DECLARE_DISPATCH(BatchNormStatsImpl, batchnorm_stats_stub)
NK_DECLARE_DISPATCH(BatchNormMergeImpl, batchnorm_merge_stats_stub)
NK_DECLARE_DISPATCH(BatchNormNormalizeImpl, batchnorm_normalize_stub)
NK_DECLARE_DISPATCH(BatchNormBackwardImpl, batchnorm_backward_stub)
NK_DECLARE_DISPATCH(BatchNormReduceImpl, batchnorm_backward_reduce_stub)
NK_DECLARE_DISPATCH(BatchNormElemtImpl, batchnorm_backward_elemt_stub)
