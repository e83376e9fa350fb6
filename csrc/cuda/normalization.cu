// CUDA implementations of the normalization stubs (drivers/normalization.hpp): layer norm (one
// block per row, two-pass statistics in registers from an L1/L2-resident row) and batch norm
// (per-channel column reduction: per-block Welford partials merged in a fixed order, Chan's
// update of core/chan.hpp). Backward reductions use per-block partial sums reduced in a fixed
// order: deterministic, no float atomics.
//
// Nothing here copies between host and device, synchronises or allocates: the per-channel
// batch-norm parameters (mean, rstd, the kernel coefficients, the running-statistics update) are
// computed by small kernels on the device with the math the CPU driver uses
// (bn_forward_channel / bn_elemt_channel), gamma, beta, running stats, mean and rstd stay on
// the device, and scratch space is the workspace the binding allocated through the caller's
// library. Where the CPU path redoes extreme-magnitude rows or channels in a wider type after
// looking at host values, the device decides by itself: batch-norm reductions always accumulate
// in double (float32 data cannot overflow them), the normalise pass falls back to double for an
// element whose x - mean overflowed float32, the dx pass takes a channel in double when its
// coefficient left float32's normal range (a flag the parameter kernel sets), and the layer-norm
// kernels redo a row in double (block-uniform branches). float64 data beyond ~1e154 has no wider
// type here.
//
// 16-bit storage (issue 15): every kernel is templated on the storage type S of x, y, dout and dx
// (float, double, __half, __nv_bfloat16) and computes in T = DevStorage<S>::C (float for the 16-bit
// types), loading and storing S with the CPU's exact conversions (cuda/common.cuh: exact widening,
// one rounding to nearest even per result). Per-row / per-channel values (mean, rstd, gamma/beta as
// read by the kernels, the planar parameters) are T, so mean/rstd of 16-bit x are float32; vectors
// given in another dtype (a bfloat16 gamma, float64 running statistics) are read and written
// through DVec, a 16-bit one rounded once from double as on the CPU (core/float16.hpp).
// CPU twin and reference: drivers/normalization.cpp, nnkernels.reference.normalization.
// Test: pytest -m gpu tests/test_normalization.py ; bench: python -m nnkernels bench --ops normalization
#include <cuda_runtime.h>

#include <math_constants.h>

#include <limits>

#include "cuda/common.cuh"
#include "drivers/normalization.hpp"

namespace nk {
namespace cuda {
namespace {

constexpr int kBlock = kNormGpuBlock;

template <class T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

// The compute type of storage type S (float for the 16-bit types).
template <class S> using CompOf = typename DevStorage<S>::C;
// x's storage element at i as its compute type.
template <class S> __device__ __forceinline__ CompOf<S> ld(const S* p, int64_t i) { return DevStorage<S>::load(p[i]); }

// A per-channel vector on the device: any float dtype, any stride (null: absent).
struct DVec {
  void* p;
  int64_t stride;
  DType dtype;
};
DVec dvec(const ArrayView* v) {
  DVec d{nullptr, 0, DType::f32};
  if (v) {
    d.p = v->data;
    d.stride = v->ndim() > 0 ? v->strides[0] : 0;
    d.dtype = v->dtype;
  }
  return d;
}
__device__ __forceinline__ double dv_read(const DVec& v, int64_t i, double dflt) {
  if (!v.p) return dflt;
  const int64_t o = i * v.stride;
  switch (v.dtype) {
    case DType::f64: return static_cast<const double*>(v.p)[o];
    case DType::f16: return double(DevStorage<__half>::load(static_cast<const __half*>(v.p)[o]));
    case DType::bf16: return double(DevStorage<__nv_bfloat16>::load(static_cast<const __nv_bfloat16*>(v.p)[o]));
    default: return double(static_cast<const float*>(v.p)[o]);
  }
}
// double -> float rounded to odd (truncated, the last bit set when inexact): rounding that to
// nearest even in a 16-bit format is the correctly rounded double, as core/float16.hpp's
// round_to_odd_float on the host (no double rounding through float).
__device__ __forceinline__ float round_to_odd_float(double v) {
  if (!isfinite(v)) return float(v);
  const float f = __double2float_rz(v);
  return double(f) == v ? f : __uint_as_float(__float_as_uint(f) | 1u);
}
__device__ __forceinline__ void dv_write(const DVec& v, int64_t i, double val) {
  const int64_t o = i * v.stride;
  switch (v.dtype) {
    case DType::f64: static_cast<double*>(v.p)[o] = val; break;
    case DType::f16: static_cast<__half*>(v.p)[o] = DevStorage<__half>::store(round_to_odd_float(val)); break;
    case DType::bf16:
      static_cast<__nv_bfloat16*>(v.p)[o] = DevStorage<__nv_bfloat16>::store(round_to_odd_float(val));
      break;
    default: static_cast<float*>(v.p)[o] = float(val); break;
  }
}
template <class T> T* ptr_of(const ArrayView* v) { return v ? static_cast<T*>(v->data) : nullptr; }
template <class T> constexpr DType dtype_of_compute() { return sizeof(T) == 4 ? DType::f32 : DType::f64; }

// n values of a vector (default dflt where absent) as T, contiguous, into dst.
template <class T> __global__ void vec_as_kernel(DVec src, T* __restrict__ dst, int64_t n, double dflt) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = T(dv_read(src, i, dflt));
}
// v's values as a contiguous T array (T: a compute type, float or double): v itself when
// norm_vec_usable, else a converted copy in `slot` (device memory of the workspace).
template <class T>
const T* vec_as(const ArrayView* v, int64_t n, double dflt, const ArrayView* avoid, T* slot, cudaStream_t s) {
  if (norm_vec_usable(v, dtype_of_compute<T>(), avoid)) return static_cast<const T*>(v->data);
  if (n > 0) vec_as_kernel<T><<<grid_for(n, kBlock), kBlock, 0, s>>>(dvec(v), slot, n, dflt);
  return slot;
}

template <class T, int ACT> __device__ __forceinline__ T act_fwd(T v, T slope) {
  if (ACT == kNormActRelu) return v < T(0) ? T(0) : v;
  if (ACT == kNormActLeakyRelu) return v > T(0) ? v : v * slope;
  return v;
}
// Backward through the activation from the saved output y (storage S) at element i.
template <class T, int ACT, class S> __device__ __forceinline__ T act_bwd(T dout, const S* y, int64_t i, T slope) {
  if (ACT == kNormActRelu) return ld(y, i) > T(0) ? dout : T(0);
  if (ACT == kNormActLeakyRelu) return ld(y, i) > T(0) ? dout : dout * slope;
  return dout;
}

// Deterministic block sum of NV values per thread (fixed shuffle tree + fixed warp order).
template <class A, int NV> __device__ __forceinline__ void block_sum(A (&v)[NV], A* shared /* NV * 32 */) {
#pragma unroll
  for (int k = 0; k < NV; ++k)
    for (int o = 16; o > 0; o >>= 1) v[k] += __shfl_xor_sync(0xffffffffu, v[k], o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, nwarps = blockDim.x / 32;
  __syncthreads();
  if (lane == 0)
    for (int k = 0; k < NV; ++k) shared[k * 32 + warp] = v[k];
  __syncthreads();
  for (int k = 0; k < NV; ++k) {
    A s = 0;
    for (int w = 0; w < nwarps; ++w) s += shared[k * 32 + w];
    v[k] = s;
  }
}

// ---------------------------------------------------------------- layer norm

// One layer-norm row in double (see ln_fwd_kernel): two passes, y from double arithmetic.
// S: the storage type of x and y; T its compute type (gamma, beta, mean, rstd).
template <class S, int ACT, class T = CompOf<S>>
__device__ __noinline__ void ln_fwd_row_wide(const S* __restrict__ xr, const T* __restrict__ gamma,
                                             const T* __restrict__ beta, S* __restrict__ yr, T* mean, T* rstd,
                                             int64_t d, double eps, T slope, double* shd) {
  double s[1] = {0};
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) s[0] += double(ld(xr, i));
  block_sum<double, 1>(s, shd);
  const double m = s[0] / double(d);
  double q[2] = {0, 0};
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const double dv = double(ld(xr, i)) - m;
    q[0] += dv;
    q[1] += dv * dv;
  }
  block_sum<double, 2>(q, shd);
  const double mu = m + q[0] / double(d);
  double var = (q[1] - q[0] * q[0] / double(d)) / double(d);
  if (var < 0) var = 0;
  const T rs = T(1.0 / sqrt(var + eps));
  if (threadIdx.x == 0) {
    *mean = T(mu);
    *rstd = rs;
  }
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
    yr[i] = DevStorage<S>::store(
        act_fwd<T, ACT>(T((double(ld(xr, i)) - mu) * double(rs) * double(gamma[i]) + double(beta[i])), slope));
}

template <class S, int ACT, class T = CompOf<S>>
__global__ void ln_fwd_kernel(const S* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                              S* __restrict__ y, T* __restrict__ mean, T* __restrict__ rstd, int64_t rows, int64_t d,
                              double eps, T slope) {
  using A = typename AccOf<T>::type;
  __shared__ A sh[2 * 32];
  __shared__ double shd[2 * 32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const S* xr = x + r * d;
    A s[1] = {0};
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) s[0] += A(ld(xr, i));
    block_sum<A, 1>(s, sh);
    const T mh = T(double(s[0]) / double(d));
    A q[2] = {0, 0};
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const A dv = A(ld(xr, i) - mh);
      q[0] += dv;
      q[1] += dv * dv;
    }
    block_sum<A, 2>(q, sh);
    const double c = double(q[0]) / double(d);
    double var = (double(q[1]) - double(q[0]) * c) / double(d);
    if (var < 0) var = 0;
    // Rows of finite values whose float statistics cannot be right (the conditions of wide_needed,
    // csrc/cpu/normalization.hpp: M2 or the sum overflowed, a tiny variance with a tiny eps, a
    // constant row whose float mean is not its value) are redone in double. q is block-summed, so
    // the branch is uniform over the block. (float64 data beyond ~1e154 is not covered: no wider type.)
    constexpr double tiny_var = sizeof(T) == 4 ? 0x1p-90 : 0x1p-900;
    if (!(double(q[1]) <= 1.7976931348623157e308) || (var <= 0 && c != 0) || (var < tiny_var && eps < tiny_var * 0x1p30)) {
      ln_fwd_row_wide<S, ACT>(xr, gamma, beta, y + r * d, mean + r, rstd + r, d, eps, slope, shd);
      continue;
    }
    const T rs = T(1.0 / sqrt(var + eps));
    const T cl = T(c);
    if (threadIdx.x == 0) {
      mean[r] = T(double(mh) + c);
      rstd[r] = rs;
    }
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
      y[r * d + i] = DevStorage<S>::store(act_fwd<T, ACT>(((ld(xr, i) - mh) - cl) * rs * gamma[i] + beta[i], slope));
  }
}

// dx per row; the residual c of the stored mean goes to cres[r] for the parameter kernel.
template <class S, int ACT, class T = CompOf<S>>
__global__ void ln_bwd_dx_kernel(const S* __restrict__ dout, const S* __restrict__ x, const S* __restrict__ y,
                                 const T* __restrict__ gamma, const T* __restrict__ mean, const T* __restrict__ rstd,
                                 S* __restrict__ dx, double* __restrict__ cres, int64_t rows, int64_t d, T slope) {
  using A = typename AccOf<T>::type;
  using St = DevStorage<S>;
  __shared__ A sh[3 * 32];
  __shared__ double shd[3 * 32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t o = r * d;
    const T m = mean[r], rs = rstd[r];
    A v[3] = {0, 0, 0};
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const T g = act_bwd<T, ACT>(ld(dout, o + i), y, o + i, slope);
      const A wdy = A(g * gamma[i]);
      const A xm = A(ld(x, o + i) - m);
      v[0] += wdy;
      v[1] += wdy * xm;
      v[2] += xm;
    }
    block_sum<A, 3>(v, sh);
    const double dd = double(d), c = double(v[2]) / dd, bp = double(v[1]) - c * double(v[0]);
    const double rsd = double(rs);
    const double kxd = -rsd * rsd * rsd * bp / dd, akx = fabs(kxd);
    // As ln_bwd_impl (csrc/cpu/normalization.cpp): float sums that overflowed, or a kx outside T's
    // normal range (std beyond ~1e19 in float32), take the row in double (block-uniform branch).
    if (!(fabs(double(v[0])) + fabs(double(v[1])) + fabs(double(v[2])) <= 1.7976931348623157e308) ||
        (akx != 0 && (akx < double(std::numeric_limits<T>::min()) || akx > double(std::numeric_limits<T>::max())))) {
      double w[3] = {0, 0, 0};
      for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        const double wdy = double(act_bwd<T, ACT>(ld(dout, o + i), y, o + i, slope)) * double(gamma[i]);
        const double xm = double(ld(x, o + i)) - double(m);
        w[0] += wdy; w[1] += wdy * xm; w[2] += xm;
      }
      block_sum<double, 3>(w, shd);
      const double cw = w[2] / dd, ma = w[0] / dd, k = (w[1] - cw * w[0]) * rsd / dd;
      if (threadIdx.x == 0) cres[r] = cw;
      for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        const double wdy = double(act_bwd<T, ACT>(ld(dout, o + i), y, o + i, slope)) * double(gamma[i]);
        const double xhat = (double(ld(x, o + i)) - double(m) - cw) * rsd;
        dx[o + i] = St::store(T(rsd * (wdy - ma - xhat * k)));
      }
      continue;
    }
    const T kx = T(kxd), bb = T(-rsd * double(v[0]) / dd), cl = T(c);
    if (threadIdx.x == 0) cres[r] = c;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const T g = act_bwd<T, ACT>(ld(dout, o + i), y, o + i, slope);
      dx[o + i] = St::store((g * gamma[i]) * rs + ((ld(x, o + i) - m) - cl) * kx + bb);
    }
  }
}

// Partial dgamma/dbeta of a row chunk for 32 columns: block (32, 8), fixed-order reduction over ty.
template <class S, int ACT, class T = CompOf<S>>
__global__ void ln_bwd_param_partial(const S* __restrict__ dout, const S* __restrict__ x, const S* __restrict__ y,
                                     const T* __restrict__ mean, const T* __restrict__ rstd,
                                     const double* __restrict__ cres, double* __restrict__ part, int64_t rows,
                                     int64_t d, int64_t rows_per_part, T slope) {
  using A = typename AccOf<T>::type;
  __shared__ A sg[8][33], sb[8][33];
  const int64_t j = int64_t(blockIdx.x) * 32 + threadIdx.x;
  const int64_t p = blockIdx.y;
  const int64_t r0 = p * rows_per_part, r1 = min(rows, r0 + rows_per_part);
  A ag = 0, ab = 0;
  if (j < d)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
      const T g = act_bwd<T, ACT>(ld(dout, r * d + j), y, r * d + j, slope);
      const T xh = ((ld(x, r * d + j) - mean[r]) - T(cres[r])) * rstd[r];
      ag += A(g * xh);
      ab += A(g);
    }
  sg[threadIdx.y][threadIdx.x] = ag;
  sb[threadIdx.y][threadIdx.x] = ab;
  __syncthreads();
  if (threadIdx.y == 0 && j < d) {
    double tg = 0, tb = 0;
    for (int k = 0; k < 8; ++k) { tg += double(sg[k][threadIdx.x]); tb += double(sb[k][threadIdx.x]); }
    part[p * 2 * d + j] = tg;
    part[p * 2 * d + d + j] = tb;
  }
}

// dgamma/dbeta from the partials, rounded once to their dtype (x's; gamma's for 16-bit x).
__global__ void ln_bwd_param_final(const double* __restrict__ part, DVec dgamma, DVec dbeta, int64_t parts,
                                   int64_t d) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= d) return;
  double tg = 0, tb = 0;
  for (int64_t p = 0; p < parts; ++p) { tg += part[p * 2 * d + j]; tb += part[p * 2 * d + d + j]; }
  dv_write(dgamma, j, tg);
  dv_write(dbeta, j, tb);
}

// An n-element C-contiguous array as T: itself when of dtype T, else converted into slot.
template <class T> const T* contiguous_as(const ArrayView& v, T* slot, cudaStream_t s) {
  if (v.dtype == dtype_of_compute<T>()) return static_cast<const T*>(v.data);
  const DVec d{v.data, 1, v.dtype};
  if (v.size > 0) vec_as_kernel<T><<<grid_for(v.size, kBlock), kBlock, 0, s>>>(d, slot, v.size, 0.0);
  return slot;
}

// ---------------------------------------------------------------- batch norm
// S: the storage type of x, y, dout, dx; T = CompOf<S>: per-channel values and parameters.

// Block (channel c, row chunk p): per-thread Welford on x - K in double (K = x[0, c, 0]: keeps the
// mean's precision; double: no overflow for any float32 data), block merge in a fixed tree order,
// partial (count, mean - K, m2) to work.
template <class S>
__global__ void bn_stats_partial(const S* __restrict__ x, int64_t n, int64_t C, int64_t S_, int64_t parts,
                                 double* __restrict__ work) {
  __shared__ double sn[kBlock], sm[kBlock], sq[kBlock];
  const int64_t c = blockIdx.x, p = blockIdx.y;
  const int64_t rows_per = (n + parts - 1) / parts;
  const int64_t n0 = p * rows_per, n1 = min(n, n0 + rows_per);
  const double K = double(ld(x, c * S_));
  double cnt = 0, mu = 0, q = 0;
  const int64_t total = (n1 > n0 ? n1 - n0 : 0) * S_;
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    const int64_t nn = n0 + i / S_, s = i % S_;
    const double v = double(ld(x, (nn * C + c) * S_ + s)) - K;
    cnt += 1;
    const double delta = v - mu;
    mu += delta / cnt;
    q += delta * (v - mu);
  }
  sn[threadIdx.x] = cnt;
  sm[threadIdx.x] = mu;
  sq[threadIdx.x] = q;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      double a = sn[threadIdx.x], b = sm[threadIdx.x], e = sq[threadIdx.x];
      chan_merge(a, b, e, sn[threadIdx.x + stride], sm[threadIdx.x + stride], sq[threadIdx.x + stride]);
      sn[threadIdx.x] = a; sm[threadIdx.x] = b; sq[threadIdx.x] = e;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    double* w = work + 3 * (c * parts + p);
    w[0] = sn[0]; w[1] = sm[0]; w[2] = sq[0];
  }
}

// Channel c's statistics from its partials: mean (double) and m2.
template <class S>
__device__ __forceinline__ void bn_merge_parts(const S* __restrict__ x, int64_t S_, int64_t c, int64_t parts,
                                               const double* __restrict__ work, double& mean, double& m2) {
  double nn = 0, m = 0, q = 0;
  for (int64_t p = 0; p < parts; ++p) {
    const double* w = work + 3 * (c * parts + p);
    chan_merge(nn, m, q, w[0], w[1], w[2]);
  }
  mean = double(ld(x, c * S_)) + m;
  m2 = q;
}

template <class S>
__global__ void bn_stats_final(const S* __restrict__ x, int64_t C, int64_t S_, int64_t parts,
                               const double* __restrict__ work, double* __restrict__ mean, double* __restrict__ m2) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  bn_merge_parts<S>(x, S_, c, parts, work, mean[c], m2[c]);
}

// Forward parameters per channel (planar [mh | scale | shift], bn_forward_channel), the returned
// mean/rstd (T) and, in training mode with running statistics, their update (in double, rounded
// once to the statistics' dtype). Training: the batch statistics from the partials of
// bn_stats_partial; eval: the running statistics.
struct BnForwardParams {
  DVec gamma, beta, running_mean, running_var;
  double count, momentum, eps;
  int64_t C, S, parts;
  bool training, unbiased;
};
template <class S, class T = CompOf<S>>
__global__ void bn_forward_params(const S* __restrict__ x, const double* __restrict__ work, BnForwardParams a,
                                  T* __restrict__ mean_out, T* __restrict__ rstd_out, T* __restrict__ params) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= a.C) return;
  double mean, var, m2 = 0;
  if (a.training) {
    bn_merge_parts<S>(x, a.S, c, a.parts, work, mean, m2);
    var = m2 / a.count;
  } else {
    mean = dv_read(a.running_mean, c, 0.0);
    var = dv_read(a.running_var, c, 1.0);
  }
  const T rs = T(1.0 / sqrt(var + a.eps));
  mean_out[c] = T(mean);
  rstd_out[c] = rs;
  bn_forward_channel<T>(mean, 0.0, rs, dv_read(a.gamma, c, 1.0), dv_read(a.beta, c, 0.0), params + c, a.C);
  if (a.training && a.running_mean.p) {
    const double vu = (a.unbiased && a.count > 1) ? m2 / (a.count - 1) : var;
    dv_write(a.running_mean, c, bn_running_update(dv_read(a.running_mean, c, 0.0), a.momentum, mean));
    dv_write(a.running_var, c, bn_running_update(dv_read(a.running_var, c, 1.0), a.momentum, vu));
  }
}

// Parameters of batchnorm_normalize: the given mean/rstd.
template <class T>
__global__ void bn_normalize_params(DVec mean, DVec rstd, DVec gamma, DVec beta, int64_t C, T* __restrict__ params) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  bn_forward_channel<T>(dv_read(mean, c, 0.0), 0.0, T(dv_read(rstd, c, 1.0)), dv_read(gamma, c, 1.0),
                        dv_read(beta, c, 0.0), params + c, C);
}

// y = act((x - mh) * scale + shift), planar params. float32 arithmetic (float32 data and the 16-bit
// types): an element whose x - mh overflowed (values spread over more than float32's range) is
// computed in double instead.
template <class S, int ACT, class T = CompOf<S>>
__global__ void bn_apply_kernel(const S* __restrict__ x, S* __restrict__ y, int64_t total, int64_t C, int64_t S_,
                                const T* __restrict__ p, T slope) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t c = (i / S_) % C;
    const T xv = ld(x, i), d = xv - p[c];
    T v = d * p[C + c] + p[2 * C + c];
    if (sizeof(T) == 4 && !isfinite(d) && isfinite(xv))
      v = T((double(xv) - double(p[c])) * double(p[C + c]) + double(p[2 * C + c]));
    y[i] = DevStorage<S>::store(act_fwd<T, ACT>(v, slope));
  }
}

// Block (channel c, row chunk p): [sum g | sum g*(x - m) | sum (x - m)] in double, m = T(mean[c]).
template <class S, int ACT, class T = CompOf<S>>
__global__ void bn_bwd_reduce_partial(const S* __restrict__ dout, const S* __restrict__ x, const S* __restrict__ y,
                                      DVec mean, int64_t n, int64_t C, int64_t S_, int64_t parts,
                                      double* __restrict__ work, T slope) {
  __shared__ double sh[3 * 32];
  const int64_t c = blockIdx.x, p = blockIdx.y;
  const int64_t rows_per = (n + parts - 1) / parts;
  const int64_t n0 = p * rows_per, n1 = min(n, n0 + rows_per);
  const int64_t total = (n1 > n0 ? n1 - n0 : 0) * S_;
  const T m = T(dv_read(mean, c, 0.0));
  double v[3] = {0, 0, 0};
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    const int64_t idx = ((n0 + i / S_) * C + c) * S_ + i % S_;
    const double g = double(act_bwd<T, ACT>(ld(dout, idx), y, idx, slope));
    const double xm = double(ld(x, idx)) - double(m);
    v[0] += g;
    v[1] += g * xm;
    v[2] += xm;
  }
  block_sum<double, 3>(v, sh);
  if (threadIdx.x == 0)
    for (int k = 0; k < 3; ++k) work[3 * (c * parts + p) + k] = v[k];
}

__device__ __forceinline__ void bn_sum_parts(const double* __restrict__ work, int64_t c, int64_t parts, double* s) {
  s[0] = s[1] = s[2] = 0;
  for (int64_t p = 0; p < parts; ++p)
    for (int k = 0; k < 3; ++k) s[k] += work[3 * (c * parts + p) + k];
}

// batchnorm_backward_reduce's results: sum_dout = sum g, sum_dout_xhat = (sum g*(x - mh) -
// (mean - mh) * sum g) * rstd (the exact split of the given mean, as on the CPU). T: x's compute
// type, the dtype of the sums (float32 for 16-bit x).
template <class T>
__global__ void bn_reduce_final(const double* __restrict__ work, int64_t C, int64_t parts, DVec mean, DVec rstd,
                                T* __restrict__ sum_dout, T* __restrict__ sum_dout_xhat) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double s[3];
  bn_sum_parts(work, c, parts, s);
  const double mu = dv_read(mean, c, 0.0), mh = double(T(mu));
  sum_dout[c] = T(s[0]);
  sum_dout_xhat[c] = T((s[1] - (mu - mh) * s[0]) * dv_read(rstd, c, 1.0));
}

// dx parameters per channel: planar [mh | A | K | B] for dx = A*g + K*(x - mh) + B
// (bn_elemt_channel), and for a channel whose K left T's normal range (bn_backward_wide) the
// double form dx = gamma*rstd*(g - sg/count - (x - m)*rstd*sgxh/count): wide = [flag | m |
// gamma*rstd | rstd | sg/count | sgxh/count] (planar doubles).
template <class T>
__device__ __forceinline__ void bn_dx_channel(double mh, double ml, double gamma, double rstd, double sg, double sgxh,
                                              double count, int64_t c, int64_t C, T* params, double* wide) {
  bn_elemt_channel<T>(mh, ml, gamma, rstd, sg, sgxh, count, params + c, C);
  const bool w = bn_backward_wide<T>(0, 0, 0, -gamma * rstd * rstd * sgxh / count);
  wide[c] = w ? 1.0 : 0.0;
  wide[C + c] = mh + ml;
  wide[2 * C + c] = gamma * rstd;
  wide[3 * C + c] = rstd;
  wide[4 * C + c] = sg / count;
  wide[5 * C + c] = sgxh / count;
}

// The fused backward's parameters from the partial sums: the residual of the stored mean
// (cres = mean(x - mh)) folded back in, dgamma = sum g*xhat, dbeta = sum g (when wanted; rounded
// once to their dtype: x's, gamma's for 16-bit x).
template <class T>
__global__ void bn_backward_params(const double* __restrict__ work, int64_t C, int64_t parts, double count, DVec mean,
                                   DVec rstd, DVec gamma, DVec dgamma, DVec dbeta, T* __restrict__ params,
                                   double* __restrict__ wide) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double s[3];
  bn_sum_parts(work, c, parts, s);
  const double rs = dv_read(rstd, c, 1.0), mh = double(T(dv_read(mean, c, 0.0)));
  const double cres = count > 0 ? s[2] / count : 0.0;
  const double sg = s[0], sgxh = (s[1] - cres * s[0]) * rs;
  if (dgamma.p) {
    dv_write(dgamma, c, sgxh);
    dv_write(dbeta, c, sg);
  }
  if (count > 0) bn_dx_channel<T>(mh, cres, dv_read(gamma, c, 1.0), rs, sg, sgxh, count, c, C, params, wide);
}

// batchnorm_backward_elemt's parameters from the given (global) sums and count.
template <class T>
__global__ void bn_elemt_params(DVec mean, DVec rstd, DVec gamma, DVec sum_dout, DVec sum_dout_xhat, double count,
                                int64_t C, T* __restrict__ params, double* __restrict__ wide) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const double mu = dv_read(mean, c, 0.0), mh = double(T(mu));
  bn_dx_channel<T>(mh, mu - mh, dv_read(gamma, c, 1.0), dv_read(rstd, c, 1.0), dv_read(sum_dout, c, 0.0),
                   dv_read(sum_dout_xhat, c, 0.0), count, c, C, params, wide);
}

template <class S, int ACT, class T = CompOf<S>>
__global__ void bn_bwd_apply_kernel(const S* __restrict__ dout, const S* __restrict__ x, const S* __restrict__ y,
                                    S* __restrict__ dx, int64_t total, int64_t C, int64_t S_,
                                    const T* __restrict__ p, const double* __restrict__ wide, T slope) {
  using St = DevStorage<S>;
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t c = (i / S_) % C;
    const T g = act_bwd<T, ACT>(ld(dout, i), y, i, slope);
    if (wide[c] != 0) {  // uniform over a channel's values
      const double xhat = (double(ld(x, i)) - wide[C + c]) * wide[3 * C + c];
      dx[i] = St::store(T(wide[2 * C + c] * (double(g) - wide[4 * C + c] - xhat * wide[5 * C + c])));
    } else {
      dx[i] = St::store(p[C + c] * g + p[2 * C + c] * (ld(x, i) - p[c]) + p[3 * C + c]);
    }
  }
}

unsigned row_grid(int64_t rows) { return unsigned(rows < 65535 * 16 ? (rows < 1 ? 1 : rows) : 65535 * 16); }
unsigned chan_grid(int64_t C) { return unsigned((C + kBlock - 1) / kBlock); }

// batchnorm_merge_stats (an all-gather's statistics merged on the device, issue 16's SyncBatchNorm):
// one thread per channel merges the P parts in part order with chan_merge (core/chan.hpp), the
// CPU driver's loop, and thread 0 sums the per-part counts into the total. The host checks the
// values of host statistics; device values cannot be checked without a synchronising read, so a
// channel that has a negative or non-finite count or a negative m2 comes out NaN (count, mean and
// m2), and so does the total when a per-part count is invalid.
struct MergeIn {
  const double* p;
  int64_t s0, s1;  // strides in elements (s1 = 0: one count per part)
  __device__ double at(int64_t part, int64_t c) const { return p[part * s0 + c * s1]; }
};
MergeIn merge_in(const ArrayView& v) {
  return MergeIn{static_cast<const double*>(v.data), v.strides[0], v.ndim() == 2 ? v.strides[1] : 0};
}
__device__ __forceinline__ bool bad_count(double n) { return !(n >= 0) || isinf(n); }

__global__ void bn_merge_kernel(MergeIn counts, MergeIn means, MergeIn m2s, int64_t P, int64_t C, double* count,
                                double* mean, double* m2, double* total) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (total && c == 0) {
    double t = 0;
    for (int64_t p = 0; p < P; ++p) t = bad_count(counts.at(p, 0)) ? CUDART_NAN : t + counts.at(p, 0);
    *total = t;
  }
  if (c >= C) return;
  double n = 0, mu = 0, q = 0;
  bool bad = false;
  for (int64_t p = 0; p < P; ++p) {
    const double nb = counts.at(p, c), qb = m2s.at(p, c);
    bad = bad || bad_count(nb) || qb < 0;
    chan_merge(n, mu, q, nb, means.at(p, c), qb);
  }
  if (bad) n = mu = q = CUDART_NAN;
  mean[c] = mu;
  m2[c] = q;
  if (count) count[c] = n;
}

#define NK_ACT_SWITCH(LAUNCH)                                   \
  switch (act) {                                                \
    case kNormActRelu: LAUNCH(kNormActRelu); break;             \
    case kNormActLeakyRelu: LAUNCH(kNormActLeakyRelu); break;   \
    default: LAUNCH(kNormActNone); break;                       \
  }

// ---------------------------------------------------------------- the stubs' implementations

// Batch-norm geometry of x (N, C, *spatial): n rows, C channels of S values.
struct BnGeom {
  int64_t n, C, S, total, parts;
  explicit BnGeom(const ArrayView& x) : n(x.shape[0]), C(x.shape[1]), S(1) {
    for (int i = 2; i < x.ndim(); ++i) S *= x.shape[size_t(i)];
    total = n * C * S;
    parts = norm_gpu_bn_parts(n, S);
  }
  int64_t count() const { return n * S; }
};
// Workspace layout of a batch-norm op: [partials 3*C*parts | per-channel slots of C doubles].
struct BnWork {
  double* partials;
  double* chan;  // 16 * C doubles
  BnWork(const ArrayView* w, const BnGeom& g)
      : partials(static_cast<double*>(w->data)), chan(static_cast<double*>(w->data) + 3 * g.C * g.parts) {}
  template <class T> T* params() const { return reinterpret_cast<T*>(chan); }  // 4 * C values of T
  double* wide(int64_t C) const { return chan + 4 * C; }                       // 6 * C doubles
};

// S: the storage type of x (and of y, dout, dx); T = CompOf<S>: mean, rstd, gamma/beta as the
// kernels read them, the parameters in the workspace.
template <class S> void ln_forward_t(const LayerNormForwardArgs& a, cudaStream_t s) {
  using T = CompOf<S>;
  const int64_t d = a.x->shape.back(), rows = a.x->size / d;
  if (rows <= 0) return;
  T* slots = a.work ? static_cast<T*>(a.work->data) : nullptr;  // null: both usable as they are
  const T* gamma = vec_as<T>(a.gamma, d, 1.0, a.y, slots, s);
  const T* beta = vec_as<T>(a.beta, d, 0.0, a.y, slots ? slots + d : nullptr, s);
  const S* xp = ptr_of<S>(a.x);
  S* y = ptr_of<S>(a.y);
  T *mean = ptr_of<T>(a.mean), *rstd = ptr_of<T>(a.rstd);
  const int act = a.act.act;
  const T slope = T(a.act.slope);
#define L(A) ln_fwd_kernel<S, A><<<row_grid(rows), kBlock, 0, s>>>(xp, gamma, beta, y, mean, rstd, rows, d, a.eps, slope)
  NK_ACT_SWITCH(L)
#undef L
}

template <class S> void ln_backward_t(const LayerNormBackwardArgs& a, cudaStream_t s) {
  using T = CompOf<S>;
  const int64_t d = a.x->shape.back(), rows = a.x->size / d;
  if (rows <= 0) {
    for (const ArrayView* v : {a.dgamma, a.dbeta})
      if (v) throw_if_error(cudaMemsetAsync(v->data, 0, size_t(d * dtype_size(v->dtype)), s), "memset");
    return;
  }
  const int64_t parts = norm_gpu_ln_parts(rows), rpp = (rows + parts - 1) / parts;
  double* cres = static_cast<double*>(a.work->data);
  double* part = cres + rows;
  T* slots = reinterpret_cast<T*>(part + 2 * parts * d);  // gamma (d) | mean (rows) | rstd (rows)
  const T* gamma = vec_as<T>(a.gamma, d, 1.0, nullptr, slots, s);
  const T* mp = contiguous_as<T>(*a.mean, slots + d, s);
  const T* rp = contiguous_as<T>(*a.rstd, slots + d + rows, s);
  const S *dp = ptr_of<S>(a.dout), *xp = ptr_of<S>(a.x), *yp = ptr_of<S>(a.y);
  S* dx = ptr_of<S>(a.dx);
  const int act = a.act.act;
  const T slope = T(a.act.slope);
#define L(A) ln_bwd_dx_kernel<S, A><<<row_grid(rows), kBlock, 0, s>>>(dp, xp, yp, gamma, mp, rp, dx, cres, rows, d, slope)
  NK_ACT_SWITCH(L)
#undef L
  if (!a.dgamma || !a.dbeta) return;
  dim3 grid(unsigned((d + 31) / 32), unsigned(parts));
#define L(A) ln_bwd_param_partial<S, A><<<grid, dim3(32, 8), 0, s>>>(dp, xp, yp, mp, rp, cres, part, rows, d, rpp, slope)
  NK_ACT_SWITCH(L)
#undef L
  ln_bwd_param_final<<<unsigned((d + kBlock - 1) / kBlock), kBlock, 0, s>>>(part, dvec(a.dgamma), dvec(a.dbeta),
                                                                             parts, d);
}

template <class S> void bn_apply_t(const ArrayView& x, const ArrayView& y, const BnGeom& g, const CompOf<S>* params,
                                   const NormAct& na, cudaStream_t s) {
  using T = CompOf<S>;
  if (g.total <= 0) return;
  const int act = na.act;
  const S* xp = static_cast<const S*>(x.data);
  const T slope = T(na.slope);
  S* yp = static_cast<S*>(y.data);
#define L(A) bn_apply_kernel<S, A><<<grid_for(g.total, kBlock, 4), kBlock, 0, s>>>(xp, yp, g.total, g.C, g.S, params, slope)
  NK_ACT_SWITCH(L)
#undef L
}

template <class S> void bn_forward_t(const BatchNormForwardArgs& a, cudaStream_t s) {
  using T = CompOf<S>;
  const BnGeom g(*a.x);
  if (g.C <= 0) return;
  const BnWork w(a.work, g);
  const S* xp = ptr_of<S>(a.x);
  // training: count > 1 (checked by the binding), so every channel has values
  if (a.training) bn_stats_partial<S><<<dim3(unsigned(g.C), unsigned(g.parts)), kBlock, 0, s>>>(xp, g.n, g.C, g.S, g.parts, w.partials);
  BnForwardParams p{dvec(a.gamma), dvec(a.beta), dvec(a.running_mean), dvec(a.running_var), double(g.count()),
                    a.momentum, a.eps, g.C, g.S, g.parts, a.training, a.unbiased};
  bn_forward_params<S><<<chan_grid(g.C), kBlock, 0, s>>>(xp, w.partials, p, ptr_of<T>(a.mean), ptr_of<T>(a.rstd),
                                                          w.params<T>());
  bn_apply_t<S>(*a.x, *a.y, g, w.params<T>(), a.act, s);
}

template <class S> void bn_stats_t(const BatchNormStatsArgs& a, cudaStream_t s) {
  const BnGeom g(*a.x);
  if (g.C <= 0) return;
  double *mean = ptr_of<double>(a.mean), *m2 = ptr_of<double>(a.m2);
  if (g.count() <= 0) {
    throw_if_error(cudaMemsetAsync(mean, 0, size_t(g.C) * 8, s), "memset");
    throw_if_error(cudaMemsetAsync(m2, 0, size_t(g.C) * 8, s), "memset");
    return;
  }
  const BnWork w(a.work, g);
  const S* xp = ptr_of<S>(a.x);
  bn_stats_partial<S><<<dim3(unsigned(g.C), unsigned(g.parts)), kBlock, 0, s>>>(xp, g.n, g.C, g.S, g.parts, w.partials);
  bn_stats_final<S><<<chan_grid(g.C), kBlock, 0, s>>>(xp, g.C, g.S, g.parts, w.partials, mean, m2);
}

template <class S> void bn_normalize_t(const BatchNormNormalizeArgs& a, cudaStream_t s) {
  using T = CompOf<S>;
  const BnGeom g(*a.x);
  if (g.C <= 0 || g.total <= 0) return;
  const BnWork w(a.work, g);
  bn_normalize_params<T><<<chan_grid(g.C), kBlock, 0, s>>>(dvec(a.mean), dvec(a.rstd), dvec(a.gamma), dvec(a.beta),
                                                            g.C, w.params<T>());
  bn_apply_t<S>(*a.x, *a.y, g, w.params<T>(), a.act, s);
}

// The reduction pass of the backward: partial sums of every (channel, row chunk) into work.
template <class S>
void bn_reduce_partials(const ArrayView* dout, const ArrayView* x, const ArrayView* y, const ArrayView* mean,
                        const BnGeom& g, const BnWork& w, const NormAct& na, cudaStream_t s) {
  using T = CompOf<S>;
  const int act = na.act;
  const T slope = T(na.slope);
  const S *dp = ptr_of<S>(dout), *xp = ptr_of<S>(x), *yp = ptr_of<S>(y);
  const DVec m = dvec(mean);
#define L(A)                                                                                                 \
  bn_bwd_reduce_partial<S, A><<<dim3(unsigned(g.C), unsigned(g.parts)), kBlock, 0, s>>>(dp, xp, yp, m, g.n, \
                                                                                         g.C, g.S, g.parts,  \
                                                                                         w.partials, slope)
  NK_ACT_SWITCH(L)
#undef L
}

template <class S>
void bn_dx_apply(const ArrayView* dout, const ArrayView* x, const ArrayView* y, const ArrayView* dx, const BnGeom& g,
                 const BnWork& w, const NormAct& na, cudaStream_t s) {
  using T = CompOf<S>;
  if (g.total <= 0) return;
  const int act = na.act;
  const T slope = T(na.slope);
  const S *dp = ptr_of<S>(dout), *xp = ptr_of<S>(x), *yp = ptr_of<S>(y);
  S* dxp = ptr_of<S>(dx);
  const T* p = w.params<T>();
  const double* wide = w.wide(g.C);
#define L(A)                                                                                                     \
  bn_bwd_apply_kernel<S, A><<<grid_for(g.total, kBlock, 4), kBlock, 0, s>>>(dp, xp, yp, dxp, g.total, g.C, g.S, \
                                                                            p, wide, slope)
  NK_ACT_SWITCH(L)
#undef L
}

template <class S> void bn_backward_t(const BatchNormBackwardArgs& a, cudaStream_t s) {
  using T = CompOf<S>;
  const BnGeom g(*a.x);
  if (g.C <= 0) return;
  const BnWork w(a.work, g);
  const bool any = g.count() > 0;
  if (any) bn_reduce_partials<S>(a.dout, a.x, a.y, a.mean, g, w, a.act, s);
  bn_backward_params<T><<<chan_grid(g.C), kBlock, 0, s>>>(w.partials, g.C, any ? g.parts : 0, double(g.count()),
                                                           dvec(a.mean), dvec(a.rstd), dvec(a.gamma),
                                                           dvec(a.dgamma), dvec(a.dbeta), w.params<T>(),
                                                           w.wide(g.C));
  bn_dx_apply<S>(a.dout, a.x, a.y, a.dx, g, w, a.act, s);
}

template <class S> void bn_reduce_t(const BatchNormReduceArgs& a, cudaStream_t s) {
  using T = CompOf<S>;
  const BnGeom g(*a.x);
  if (g.C <= 0) return;
  const BnWork w(a.work, g);
  const bool any = g.count() > 0;
  if (any) bn_reduce_partials<S>(a.dout, a.x, a.y, a.mean, g, w, a.act, s);
  bn_reduce_final<T><<<chan_grid(g.C), kBlock, 0, s>>>(w.partials, g.C, any ? g.parts : 0, dvec(a.mean),
                                                        dvec(a.rstd), ptr_of<T>(a.sum_dout),
                                                        ptr_of<T>(a.sum_dout_xhat));
}

template <class S> void bn_elemt_t(const BatchNormElemtArgs& a, cudaStream_t s) {
  using T = CompOf<S>;
  const BnGeom g(*a.x);
  if (g.C <= 0 || g.total <= 0) return;
  const BnWork w(a.work, g);
  bn_elemt_params<T><<<chan_grid(g.C), kBlock, 0, s>>>(dvec(a.mean), dvec(a.rstd), dvec(a.gamma), dvec(a.sum_dout),
                                                        dvec(a.sum_dout_xhat), a.count, g.C, w.params<T>(),
                                                        w.wide(g.C));
  bn_dx_apply<S>(a.dout, a.x, a.y, a.dx, g, w, a.act, s);
}

#undef NK_ACT_SWITCH

// One entry point per stub: dtype dispatch on x's storage type, launch on ctx's stream, launch
// errors raised.
template <class Args, template <class> class Op>
void run(const Args& a, const ExecContext& ctx, const char* what) {
  const cudaStream_t s = as_stream(ctx.stream);
  switch (a.x->dtype) {
    case DType::f32: Op<float>::go(a, s); break;
    case DType::f64: Op<double>::go(a, s); break;
    case DType::f16: Op<__half>::go(a, s); break;
    case DType::bf16: Op<__nv_bfloat16>::go(a, s); break;
  }
  throw_if_error(cudaGetLastError(), what);
}
#define NK_NORM_OP(Name, Fn, Args) \
  template <class S> struct Name { static void go(const Args& a, cudaStream_t s) { Fn<S>(a, s); } };
NK_NORM_OP(LnForwardOp, ln_forward_t, LayerNormForwardArgs)
NK_NORM_OP(LnBackwardOp, ln_backward_t, LayerNormBackwardArgs)
NK_NORM_OP(BnForwardOp, bn_forward_t, BatchNormForwardArgs)
NK_NORM_OP(BnStatsOp, bn_stats_t, BatchNormStatsArgs)
NK_NORM_OP(BnNormalizeOp, bn_normalize_t, BatchNormNormalizeArgs)
NK_NORM_OP(BnBackwardOp, bn_backward_t, BatchNormBackwardArgs)
NK_NORM_OP(BnReduceOp, bn_reduce_t, BatchNormReduceArgs)
NK_NORM_OP(BnElemtOp, bn_elemt_t, BatchNormElemtArgs)
#undef NK_NORM_OP

}  // namespace

void layernorm_forward_cuda(const LayerNormForwardArgs& a, const ExecContext& ctx) {
  run<LayerNormForwardArgs, LnForwardOp>(a, ctx, "layernorm_forward kernel launch");
}
void layernorm_backward_cuda(const LayerNormBackwardArgs& a, const ExecContext& ctx) {
  run<LayerNormBackwardArgs, LnBackwardOp>(a, ctx, "layernorm_backward kernel launch");
}
void batchnorm_forward_cuda(const BatchNormForwardArgs& a, const ExecContext& ctx) {
  run<BatchNormForwardArgs, BnForwardOp>(a, ctx, "batchnorm_forward kernel launch");
}
void batchnorm_stats_cuda(const BatchNormStatsArgs& a, const ExecContext& ctx) {
  run<BatchNormStatsArgs, BnStatsOp>(a, ctx, "batchnorm_stats kernel launch");
}
void batchnorm_normalize_cuda(const BatchNormNormalizeArgs& a, const ExecContext& ctx) {
  run<BatchNormNormalizeArgs, BnNormalizeOp>(a, ctx, "batchnorm_normalize kernel launch");
}
void batchnorm_backward_cuda(const BatchNormBackwardArgs& a, const ExecContext& ctx) {
  run<BatchNormBackwardArgs, BnBackwardOp>(a, ctx, "batchnorm_backward kernel launch");
}
void batchnorm_backward_reduce_cuda(const BatchNormReduceArgs& a, const ExecContext& ctx) {
  run<BatchNormReduceArgs, BnReduceOp>(a, ctx, "batchnorm_backward_reduce kernel launch");
}
void batchnorm_backward_elemt_cuda(const BatchNormElemtArgs& a, const ExecContext& ctx) {
  run<BatchNormElemtArgs, BnElemtOp>(a, ctx, "batchnorm_backward_elemt kernel launch");
}
void batchnorm_merge_stats_cuda(const BatchNormMergeArgs& a, const ExecContext& ctx) {
  const int64_t P = a.means->shape[0], C = a.means->shape[1];
  bn_merge_kernel<<<chan_grid(C > 0 ? C : 1), kBlock, 0, as_stream(ctx.stream)>>>(
      merge_in(*a.counts), merge_in(*a.means), merge_in(*a.m2s), P, C, ptr_of<double>(a.count), ptr_of<double>(a.mean),
      ptr_of<double>(a.m2), ptr_of<double>(a.total));
  throw_if_error(cudaGetLastError(), "batchnorm_merge_stats kernel launch");
}

}  // namespace cuda
}  // namespace nk

NK_REGISTER_DISPATCH(layernorm_forward_stub, cuda, &nk::cuda::layernorm_forward_cuda);
NK_REGISTER_DISPATCH(layernorm_backward_stub, cuda, &nk::cuda::layernorm_backward_cuda);
NK_REGISTER_DISPATCH(batchnorm_forward_stub, cuda, &nk::cuda::batchnorm_forward_cuda);
NK_REGISTER_DISPATCH(batchnorm_stats_stub, cuda, &nk::cuda::batchnorm_stats_cuda);
NK_REGISTER_DISPATCH(batchnorm_normalize_stub, cuda, &nk::cuda::batchnorm_normalize_cuda);
NK_REGISTER_DISPATCH(batchnorm_backward_stub, cuda, &nk::cuda::batchnorm_backward_cuda);
NK_REGISTER_DISPATCH(batchnorm_backward_reduce_stub, cuda, &nk::cuda::batchnorm_backward_reduce_cuda);
NK_REGISTER_DISPATCH(batchnorm_backward_elemt_stub, cuda, &nk::cuda::batchnorm_backward_elemt_cuda);
NK_REGISTER_DISPATCH(batchnorm_merge_stats_stub, cuda, &nk::cuda::batchnorm_merge_stats_cuda);
