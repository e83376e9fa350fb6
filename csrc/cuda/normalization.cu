// CUDA normalization kernels: layer norm (one block per row, two-pass statistics in registers
// from an L1/L2-resident row) and batch norm (per-channel column reduction: per-block Welford
// partials, merged in a fixed order by a second kernel). Backward uses per-block partial sums
// reduced by a second kernel: deterministic, no float atomics.
// CPU twin and reference: csrc/cpu/normalization.cpp, nnkernels.reference.normalization.
// Test: pytest -m gpu tests/test_normalization.py ; bench: python -m nnkernels bench --ops normalization
#include <limits>
#include <cuda_runtime.h>

#include "cpu/normalization.hpp"
#include "cuda/common.cuh"
#include "cuda/normalization.hpp"

namespace nk {
namespace cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kMaxParts = 128;  // row chunks of a batch-norm reduction

template <class T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

template <class T, int ACT> __device__ __forceinline__ T act_fwd(T v, T slope) {
  if (ACT == kNormActRelu) return v < T(0) ? T(0) : v;
  if (ACT == kNormActLeakyRelu) return v > T(0) ? v : v * slope;
  return v;
}
template <class T, int ACT> __device__ __forceinline__ T act_bwd(T dout, const T* y, int64_t i, T slope) {
  if (ACT == kNormActRelu) return y[i] > T(0) ? dout : T(0);
  if (ACT == kNormActLeakyRelu) return y[i] > T(0) ? dout : dout * slope;
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
template <class T, int ACT>
__device__ __noinline__ void ln_fwd_row_wide(const T* __restrict__ xr, const T* __restrict__ gamma,
                                             const T* __restrict__ beta, T* __restrict__ yr, T* mean, T* rstd,
                                             int64_t d, double eps, T slope, double* shd) {
  double s[1] = {0};
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) s[0] += double(xr[i]);
  block_sum<double, 1>(s, shd);
  const double m = s[0] / double(d);
  double q[2] = {0, 0};
  for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
    const double dv = double(xr[i]) - m;
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
    yr[i] = act_fwd<T, ACT>(T((double(xr[i]) - mu) * double(rs) * double(gamma[i]) + double(beta[i])), slope);
}

template <class T, int ACT>
__global__ void ln_fwd_kernel(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                              T* __restrict__ y, T* __restrict__ mean, T* __restrict__ rstd, int64_t rows, int64_t d,
                              double eps, T slope) {
  using A = typename AccOf<T>::type;
  __shared__ A sh[2 * 32];
  __shared__ double shd[2 * 32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const T* xr = x + r * d;
    A s[1] = {0};
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) s[0] += A(xr[i]);
    block_sum<A, 1>(s, sh);
    const T mh = T(double(s[0]) / double(d));
    A q[2] = {0, 0};
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const A dv = A(xr[i] - mh);
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
      ln_fwd_row_wide<T, ACT>(xr, gamma, beta, y + r * d, mean + r, rstd + r, d, eps, slope, shd);
      continue;
    }
    const T rs = T(1.0 / sqrt(var + eps));
    const T cl = T(c);
    if (threadIdx.x == 0) {
      mean[r] = T(double(mh) + c);
      rstd[r] = rs;
    }
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x)
      y[r * d + i] = act_fwd<T, ACT>(((xr[i] - mh) - cl) * rs * gamma[i] + beta[i], slope);
  }
}

// dx per row; the residual c of the stored mean goes to cres[r] for the parameter kernel.
template <class T, int ACT>
__global__ void ln_bwd_dx_kernel(const T* __restrict__ dout, const T* __restrict__ x, const T* __restrict__ y,
                                 const T* __restrict__ gamma, const T* __restrict__ mean, const T* __restrict__ rstd,
                                 T* __restrict__ dx, double* __restrict__ cres, int64_t rows, int64_t d, T slope) {
  using A = typename AccOf<T>::type;
  __shared__ A sh[3 * 32];
  __shared__ double shd[3 * 32];
  for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
    const int64_t o = r * d;
    const T m = mean[r], rs = rstd[r];
    A v[3] = {0, 0, 0};
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const T g = act_bwd<T, ACT>(dout[o + i], y, o + i, slope);
      const A wdy = A(g * gamma[i]);
      const A xm = A(x[o + i] - m);
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
        const double wdy = double(act_bwd<T, ACT>(dout[o + i], y, o + i, slope)) * double(gamma[i]);
        const double xm = double(x[o + i]) - double(m);
        w[0] += wdy; w[1] += wdy * xm; w[2] += xm;
      }
      block_sum<double, 3>(w, shd);
      const double cw = w[2] / dd, ma = w[0] / dd, k = (w[1] - cw * w[0]) * rsd / dd;
      if (threadIdx.x == 0) cres[r] = cw;
      for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
        const double wdy = double(act_bwd<T, ACT>(dout[o + i], y, o + i, slope)) * double(gamma[i]);
        const double xhat = (double(x[o + i]) - double(m) - cw) * rsd;
        dx[o + i] = T(rsd * (wdy - ma - xhat * k));
      }
      continue;
    }
    const T kx = T(kxd), bb = T(-rsd * double(v[0]) / dd), cl = T(c);
    if (threadIdx.x == 0) cres[r] = c;
    for (int64_t i = threadIdx.x; i < d; i += blockDim.x) {
      const T g = act_bwd<T, ACT>(dout[o + i], y, o + i, slope);
      dx[o + i] = (g * gamma[i]) * rs + ((x[o + i] - m) - cl) * kx + bb;
    }
  }
}

// Partial dgamma/dbeta of a row chunk for 32 columns: block (32, 8), fixed-order reduction over ty.
template <class T, int ACT>
__global__ void ln_bwd_param_partial(const T* __restrict__ dout, const T* __restrict__ x, const T* __restrict__ y,
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
      const T g = act_bwd<T, ACT>(dout[r * d + j], y, r * d + j, slope);
      const T xh = ((x[r * d + j] - mean[r]) - T(cres[r])) * rstd[r];
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

template <class T>
__global__ void ln_bwd_param_final(const double* __restrict__ part, T* __restrict__ dgamma, T* __restrict__ dbeta,
                                   int64_t parts, int64_t d) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= d) return;
  double tg = 0, tb = 0;
  for (int64_t p = 0; p < parts; ++p) { tg += part[p * 2 * d + j]; tb += part[p * 2 * d + d + j]; }
  dgamma[j] = T(tg);
  dbeta[j] = T(tb);
}

int64_t ln_parts(int64_t rows) {
  int64_t p = (rows + 255) / 256;
  return p < 1 ? 1 : (p > 256 ? 256 : p);
}

// ---------------------------------------------------------------- batch norm

int64_t bn_parts(int64_t n, int64_t s) {
  const int64_t per_channel = n * s;
  int64_t p = (per_channel + 4 * kBlock * 8 - 1) / (4 * kBlock * 8);
  if (p < 1) p = 1;
  if (p > kMaxParts) p = kMaxParts;
  if (p > n) p = n < 1 ? 1 : n;
  return p;
}

// Chan merge of (n, mean, m2) pairs.
__device__ __forceinline__ void chan(double& n, double& m, double& q, double nb, double mb, double qb) {
  const double t = n + nb;
  if (t == 0) return;
  const double delta = mb - m;
  m += delta * (nb / t);
  q += qb + delta * delta * (n * nb / t);
  n = t;
}

// Block (channel c, row chunk p): per-thread Welford on x - K (K = x[0, c, 0]: keeps the mean's
// precision), block merge in a fixed tree order, partial (count, mean - K, m2) to work.
template <class T>
__global__ void bn_stats_partial(const T* __restrict__ x, int64_t n, int64_t C, int64_t S, int64_t parts,
                                 double* __restrict__ work) {
  using A = typename AccOf<T>::type;
  __shared__ double sn[kBlock], sm[kBlock], sq[kBlock];
  const int64_t c = blockIdx.x, p = blockIdx.y;
  const int64_t rows_per = (n + parts - 1) / parts;
  const int64_t n0 = p * rows_per, n1 = min(n, n0 + rows_per);
  const T K = x[c * S];
  A cnt = 0, mu = 0, q = 0;
  const int64_t total = (n1 > n0 ? n1 - n0 : 0) * S;
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    const int64_t nn = n0 + i / S, s = i % S;
    const A v = A(x[(nn * C + c) * S + s] - K);
    cnt += A(1);
    const A delta = v - mu;
    mu += delta / cnt;
    q += delta * (v - mu);
  }
  sn[threadIdx.x] = double(cnt);
  sm[threadIdx.x] = double(mu);
  sq[threadIdx.x] = double(q);
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) {
      double a = sn[threadIdx.x], b = sm[threadIdx.x], e = sq[threadIdx.x];
      chan(a, b, e, sn[threadIdx.x + stride], sm[threadIdx.x + stride], sq[threadIdx.x + stride]);
      sn[threadIdx.x] = a; sm[threadIdx.x] = b; sq[threadIdx.x] = e;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    double* w = work + 3 * (c * parts + p);
    w[0] = sn[0]; w[1] = sm[0]; w[2] = sq[0];
  }
}

template <class T>
__global__ void bn_stats_final(const T* __restrict__ x, int64_t C, int64_t S, int64_t parts,
                               const double* __restrict__ work, double* __restrict__ mean, double* __restrict__ m2) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double nn = 0, m = 0, q = 0;
  for (int64_t p = 0; p < parts; ++p) {
    const double* w = work + 3 * (c * parts + p);
    chan(nn, m, q, w[0], w[1], w[2]);
  }
  mean[c] = double(x[c * S]) + m;
  m2[c] = q;
}

template <class T, int ACT>
__global__ void bn_apply_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t total, int64_t C, int64_t S,
                                const T* __restrict__ params, T slope) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t c = (i / S) % C;
    const T* p = params + 4 * c;
    y[i] = act_fwd<T, ACT>(((x[i] - p[0]) - p[1]) * p[2] + p[3], slope);
  }
}

template <class T, int ACT>
__global__ void bn_bwd_reduce_partial(const T* __restrict__ dout, const T* __restrict__ x, const T* __restrict__ y,
                                      const T* __restrict__ mean, int64_t n, int64_t C, int64_t S, int64_t parts,
                                      double* __restrict__ work, T slope) {
  using A = typename AccOf<T>::type;
  __shared__ A sh[3 * 32];
  const int64_t c = blockIdx.x, p = blockIdx.y;
  const int64_t rows_per = (n + parts - 1) / parts;
  const int64_t n0 = p * rows_per, n1 = min(n, n0 + rows_per);
  const int64_t total = (n1 > n0 ? n1 - n0 : 0) * S;
  const T m = mean[c];
  A v[3] = {0, 0, 0};
  for (int64_t i = threadIdx.x; i < total; i += blockDim.x) {
    const int64_t idx = ((n0 + i / S) * C + c) * S + i % S;
    const T g = act_bwd<T, ACT>(dout[idx], y, idx, slope);
    const A xm = A(x[idx] - m);
    v[0] += A(g);
    v[1] += A(g) * xm;
    v[2] += xm;
  }
  block_sum<A, 3>(v, sh);
  if (threadIdx.x == 0)
    for (int k = 0; k < 3; ++k) work[3 * (c * parts + p) + k] = double(v[k]);
}

__global__ void bn_bwd_reduce_final(const double* __restrict__ work, int64_t C, int64_t parts, double* __restrict__ out3) {
  const int64_t c = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= C) return;
  double s[3] = {0, 0, 0};
  for (int64_t p = 0; p < parts; ++p)
    for (int k = 0; k < 3; ++k) s[k] += work[3 * (c * parts + p) + k];
  for (int k = 0; k < 3; ++k) out3[3 * c + k] = s[k];
}

template <class T, int ACT>
__global__ void bn_bwd_apply_kernel(const T* __restrict__ dout, const T* __restrict__ x, const T* __restrict__ y,
                                    T* __restrict__ dx, int64_t total, int64_t C, int64_t S,
                                    const T* __restrict__ params, T slope) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    const int64_t c = (i / S) % C;
    const T* p = params + 5 * c;
    const T g = act_bwd<T, ACT>(dout[i], y, i, slope);
    dx[i] = g * p[2] + ((x[i] - p[0]) - p[1]) * p[3] + p[4];
  }
}

unsigned row_grid(int64_t rows) { return unsigned(rows < 65535 * 16 ? (rows < 1 ? 1 : rows) : 65535 * 16); }

#define NK_ACT_SWITCH(LAUNCH)                                   \
  switch (act) {                                                \
    case kNormActRelu: LAUNCH(kNormActRelu); break;             \
    case kNormActLeakyRelu: LAUNCH(kNormActLeakyRelu); break;   \
    default: LAUNCH(kNormActNone); break;                       \
  }

template <class T>
void ln_forward_t(uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, uintptr_t mean, uintptr_t rstd,
                  int64_t rows, int64_t d, double eps, int act, double slope, cudaStream_t s) {
#define L(A)                                                                                                    \
  ln_fwd_kernel<T, A><<<row_grid(rows), kBlock, 0, s>>>(                                                        \
      reinterpret_cast<const T*>(x), reinterpret_cast<const T*>(gamma), reinterpret_cast<const T*>(beta),      \
      reinterpret_cast<T*>(y), reinterpret_cast<T*>(mean), reinterpret_cast<T*>(rstd), rows, d, eps, T(slope))
  NK_ACT_SWITCH(L)
#undef L
}

template <class T>
void ln_backward_t(uintptr_t dout, uintptr_t x, uintptr_t y, uintptr_t gamma, uintptr_t mean, uintptr_t rstd,
                   uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta, uintptr_t work, int64_t rows, int64_t d, int act,
                   double slope, cudaStream_t s) {
  const T* dp = reinterpret_cast<const T*>(dout);
  const T* xp = reinterpret_cast<const T*>(x);
  const T* yp = reinterpret_cast<const T*>(y);
  const T* mp = reinterpret_cast<const T*>(mean);
  const T* rp = reinterpret_cast<const T*>(rstd);
  double* cres = reinterpret_cast<double*>(work);
  double* part = cres + rows;
  const int64_t parts = ln_parts(rows), rpp = (rows + parts - 1) / parts;
#define L(A)                                                                                                     \
  ln_bwd_dx_kernel<T, A><<<row_grid(rows), kBlock, 0, s>>>(dp, xp, yp, reinterpret_cast<const T*>(gamma), mp, rp, \
                                                           reinterpret_cast<T*>(dx), cres, rows, d, T(slope))
  NK_ACT_SWITCH(L)
#undef L
  if (dgamma == 0 || dbeta == 0) return;
  dim3 grid(unsigned((d + 31) / 32), unsigned(parts));
#define L(A) ln_bwd_param_partial<T, A><<<grid, dim3(32, 8), 0, s>>>(dp, xp, yp, mp, rp, cres, part, rows, d, rpp, T(slope))
  NK_ACT_SWITCH(L)
#undef L
  ln_bwd_param_final<T><<<unsigned((d + kBlock - 1) / kBlock), kBlock, 0, s>>>(
      part, reinterpret_cast<T*>(dgamma), reinterpret_cast<T*>(dbeta), parts, d);
}

template <class T>
void bn_stats_t(uintptr_t x, int64_t n, int64_t c, int64_t sp, uintptr_t work, uintptr_t mean, uintptr_t m2,
                cudaStream_t s) {
  const int64_t parts = bn_parts(n, sp);
  const T* xp = reinterpret_cast<const T*>(x);
  double* w = reinterpret_cast<double*>(work);
  bn_stats_partial<T><<<dim3(unsigned(c), unsigned(parts)), kBlock, 0, s>>>(xp, n, c, sp, parts, w);
  bn_stats_final<T><<<unsigned((c + kBlock - 1) / kBlock), kBlock, 0, s>>>(
      xp, c, sp, parts, w, reinterpret_cast<double*>(mean), reinterpret_cast<double*>(m2));
}

template <class T>
void bn_apply_t(uintptr_t x, uintptr_t y, int64_t n, int64_t c, int64_t sp, uintptr_t params, int act, double slope,
                cudaStream_t s) {
  const int64_t total = n * c * sp;
#define L(A)                                                                                                     \
  bn_apply_kernel<T, A><<<grid_for(total, kBlock, 4), kBlock, 0, s>>>(reinterpret_cast<const T*>(x),             \
                                                                      reinterpret_cast<T*>(y), total, c, sp,     \
                                                                      reinterpret_cast<const T*>(params), T(slope))
  NK_ACT_SWITCH(L)
#undef L
}

template <class T>
void bn_reduce_t(uintptr_t dout, uintptr_t x, uintptr_t y, uintptr_t mean, int64_t n, int64_t c, int64_t sp,
                 uintptr_t work, uintptr_t out3, int act, double slope, cudaStream_t s) {
  const int64_t parts = bn_parts(n, sp);
  double* w = reinterpret_cast<double*>(work);
#define L(A)                                                                                                       \
  bn_bwd_reduce_partial<T, A><<<dim3(unsigned(c), unsigned(parts)), kBlock, 0, s>>>(                               \
      reinterpret_cast<const T*>(dout), reinterpret_cast<const T*>(x), reinterpret_cast<const T*>(y),             \
      reinterpret_cast<const T*>(mean), n, c, sp, parts, w, T(slope))
  NK_ACT_SWITCH(L)
#undef L
  bn_bwd_reduce_final<<<unsigned((c + kBlock - 1) / kBlock), kBlock, 0, s>>>(w, c, parts,
                                                                             reinterpret_cast<double*>(out3));
}

template <class T>
void bn_bwd_apply_t(uintptr_t dout, uintptr_t x, uintptr_t y, uintptr_t dx, int64_t n, int64_t c, int64_t sp,
                    uintptr_t params, int act, double slope, cudaStream_t s) {
  const int64_t total = n * c * sp;
#define L(A)                                                                                                      \
  bn_bwd_apply_kernel<T, A><<<grid_for(total, kBlock, 4), kBlock, 0, s>>>(                                        \
      reinterpret_cast<const T*>(dout), reinterpret_cast<const T*>(x), reinterpret_cast<const T*>(y),            \
      reinterpret_cast<T*>(dx), total, c, sp, reinterpret_cast<const T*>(params), T(slope))
  NK_ACT_SWITCH(L)
#undef L
}

}  // namespace

void layernorm_forward(int dtype, uintptr_t x, uintptr_t gamma, uintptr_t beta, uintptr_t y, uintptr_t mean,
                       uintptr_t rstd, int64_t rows, int64_t d, double eps, int act, double slope, uintptr_t stream) {
  if (rows <= 0 || d <= 0) return;
  if (dtype == 0) ln_forward_t<float>(x, gamma, beta, y, mean, rstd, rows, d, eps, act, slope, as_stream(stream));
  else ln_forward_t<double>(x, gamma, beta, y, mean, rstd, rows, d, eps, act, slope, as_stream(stream));
  throw_if_error(cudaGetLastError(), "layernorm_forward kernel launch");
}

int64_t layernorm_backward_workspace(int64_t rows, int64_t d) { return rows + 2 * ln_parts(rows) * d; }

void layernorm_backward(int dtype, uintptr_t dout, uintptr_t x, uintptr_t y, uintptr_t gamma, uintptr_t mean,
                        uintptr_t rstd, uintptr_t dx, uintptr_t dgamma, uintptr_t dbeta, uintptr_t work, int64_t rows,
                        int64_t d, int act, double slope, uintptr_t stream) {
  if (d <= 0) return;
  if (rows <= 0) {
    const size_t bytes = size_t(d) * (dtype == 0 ? 4 : 8);
    if (dgamma) throw_if_error(cudaMemsetAsync(reinterpret_cast<void*>(dgamma), 0, bytes, as_stream(stream)), "memset");
    if (dbeta) throw_if_error(cudaMemsetAsync(reinterpret_cast<void*>(dbeta), 0, bytes, as_stream(stream)), "memset");
    return;
  }
  if (dtype == 0)
    ln_backward_t<float>(dout, x, y, gamma, mean, rstd, dx, dgamma, dbeta, work, rows, d, act, slope, as_stream(stream));
  else
    ln_backward_t<double>(dout, x, y, gamma, mean, rstd, dx, dgamma, dbeta, work, rows, d, act, slope, as_stream(stream));
  throw_if_error(cudaGetLastError(), "layernorm_backward kernel launch");
}

int64_t batchnorm_workspace(int64_t n, int64_t c, int64_t s) { return 3 * c * bn_parts(n, s); }

void batchnorm_stats(int dtype, uintptr_t x, int64_t n, int64_t c, int64_t s, uintptr_t work, uintptr_t mean,
                     uintptr_t m2, uintptr_t stream) {
  if (c <= 0) return;
  if (n * s <= 0) {
    throw_if_error(cudaMemsetAsync(reinterpret_cast<void*>(mean), 0, size_t(c) * 8, as_stream(stream)), "memset");
    throw_if_error(cudaMemsetAsync(reinterpret_cast<void*>(m2), 0, size_t(c) * 8, as_stream(stream)), "memset");
    return;
  }
  if (dtype == 0) bn_stats_t<float>(x, n, c, s, work, mean, m2, as_stream(stream));
  else bn_stats_t<double>(x, n, c, s, work, mean, m2, as_stream(stream));
  throw_if_error(cudaGetLastError(), "batchnorm_stats kernel launch");
}

void batchnorm_apply(int dtype, uintptr_t x, uintptr_t y, int64_t n, int64_t c, int64_t s, uintptr_t params, int act,
                     double slope, uintptr_t stream) {
  if (n * c * s <= 0) return;
  if (dtype == 0) bn_apply_t<float>(x, y, n, c, s, params, act, slope, as_stream(stream));
  else bn_apply_t<double>(x, y, n, c, s, params, act, slope, as_stream(stream));
  throw_if_error(cudaGetLastError(), "batchnorm_apply kernel launch");
}

void batchnorm_backward_reduce(int dtype, uintptr_t dout, uintptr_t x, uintptr_t y, uintptr_t mean, int64_t n,
                               int64_t c, int64_t s, uintptr_t work, uintptr_t out3, int act, double slope,
                               uintptr_t stream) {
  if (c <= 0) return;
  if (n * s <= 0) {
    throw_if_error(cudaMemsetAsync(reinterpret_cast<void*>(out3), 0, size_t(3 * c) * 8, as_stream(stream)), "memset");
    return;
  }
  if (dtype == 0) bn_reduce_t<float>(dout, x, y, mean, n, c, s, work, out3, act, slope, as_stream(stream));
  else bn_reduce_t<double>(dout, x, y, mean, n, c, s, work, out3, act, slope, as_stream(stream));
  throw_if_error(cudaGetLastError(), "batchnorm_backward_reduce kernel launch");
}

void batchnorm_backward_apply(int dtype, uintptr_t dout, uintptr_t x, uintptr_t y, uintptr_t dx, int64_t n, int64_t c,
                              int64_t s, uintptr_t params, int act, double slope, uintptr_t stream) {
  if (n * c * s <= 0) return;
  if (dtype == 0) bn_bwd_apply_t<float>(dout, x, y, dx, n, c, s, params, act, slope, as_stream(stream));
  else bn_bwd_apply_t<double>(dout, x, y, dx, n, c, s, params, act, slope, as_stream(stream));
  throw_if_error(cudaGetLastError(), "batchnorm_backward_apply kernel launch");
}

}  // namespace cuda
}  // namespace nk
