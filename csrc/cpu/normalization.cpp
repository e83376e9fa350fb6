// Normalization kernels: layer norm and batch norm, forward and backward, with an optional
// fused ReLU / leaky ReLU, float32/float64, one SIMD source compiled per ISA level.
// Reference: nnkernels.reference.normalization. CUDA twin: csrc/cuda/normalization.cu.
// Host side (threads, fixed chunks, partial combination): csrc/bindings/normalization.cpp.
// Test: PYTHONPATH=python pytest tests/test_normalization.py
// Bench: python -m nnkernels bench --ops normalization --sizes small large
//
// Numerics (the same everywhere):
//  * statistics are two-pass over a block that sits in cache (a layer-norm row, 64 rows of a
//    column tile, a 4096-element block of a plane): mh = sum(x)/n, then s1 = sum(x - mh) and
//    s2 = sum((x - mh)^2); the block mean is mh + s1/n and m2 = s2 - s1^2/n (the corrected
//    two-pass algorithm of Chan, Golub & LeVeque). Blocks are merged with Chan's pairwise
//    update in double, in a fixed order. Never the one-pass E[x^2] - E[x]^2.
//  * the mean is applied as a pair (mh, ml) of the data type: (x - mh) is exact for x close
//    to the mean, so data with mean 1e4 and std 1 normalise as accurately as centred data.
//  * float lanes accumulate at most one block; blocks are accumulated in double.
#include "cpu/normalization.hpp"

#include "core/simd.hpp"

NK_KERNEL_NAMESPACE_BEGIN
namespace {

template <class T> using V = typename Simd<T>::V;

constexpr int64_t kRunBlock = 4096;  // elements of a row/plane reduced in float before going to double

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

template <class T> inline V<T> ld(const T* p, int64_t k) {
  return k == Simd<T>::N ? Simd<T>::load(p) : load_partial<T>(p, k);
}
template <class T> inline void st(T* p, V<T> v, int64_t k) {
  if (k == Simd<T>::N) Simd<T>::store(p, v); else store_partial<T>(p, v, k);
}
template <class T> inline T hsum(V<T> v) {
  T s = 0;
  for (int l = 0; l < Simd<T>::N; ++l) s += v[l];
  return s;
}
// Lanes >= k set to zero (reduction tails).
template <class T> inline V<T> keep_first(V<T> v, int64_t k) {
  V<T> idx;
  for (int l = 0; l < Simd<T>::N; ++l) idx[l] = T(l);
  return idx < T(k) ? v : V<T>{};
}

// Fused activation, forward: relu y = v < 0 ? 0 : v (NaN propagates); leaky y = v > 0 ? v : slope*v.
template <class T, int ACT> inline V<T> act_fwd(V<T> v, T slope) {
  if constexpr (ACT == kNormActRelu) return v < T(0) ? V<T>{} : v;
  else if constexpr (ACT == kNormActLeakyRelu) return v > T(0) ? v : v * slope;
  else return v;
}
// Backward through the activation from its output y (slope >= 0): g = y > 0 ? dout : 0 (relu) / slope*dout.
template <class T, int ACT> inline V<T> act_bwd(V<T> dout, const T* y, int64_t k, T slope) {
  if constexpr (ACT == kNormActRelu) return ld(y, k) > T(0) ? dout : V<T>{};
  else if constexpr (ACT == kNormActLeakyRelu) return ld(y, k) > T(0) ? dout : dout * slope;
  else return dout;
}

// y[0..n) = f(i, k) for vector blocks (k lanes valid). With `stream`, non-temporal stores
// after peeling to the vector alignment of y (caller fences).
template <class T, class F> inline void write_row(T* y, int64_t n, bool stream, F&& f) {
  using S = Simd<T>;
  int64_t i = 0;
  if (stream) {
    const uintptr_t mis = reinterpret_cast<uintptr_t>(y) % uintptr_t(kVecBytes);
    if (mis % sizeof(T) == 0) {
      if (mis != 0) {
        int64_t head = int64_t((uintptr_t(kVecBytes) - mis) / sizeof(T));
        if (head > n) head = n;
        store_partial<T>(y, f(int64_t(0), head), head);
        i = head;
      }
      for (; i + S::N <= n; i += S::N) S::stream(y + i, f(i, int64_t(S::N)));
    }
  }
  for (; i + S::N <= n; i += S::N) S::store(y + i, f(i, int64_t(S::N)));
  if (i < n) store_partial<T>(y + i, f(i, n - i), n - i);
}

// sum(x[0..n)): float lanes within blocks of kRunBlock, double across blocks.
template <class T> double run_sum(const T* x, int64_t n) {
  using S = Simd<T>;
  constexpr int N = S::N;
  double total = 0;
  for (int64_t b0 = 0; b0 < n; b0 += kRunBlock) {
    const int64_t bn = imin(kRunBlock, n - b0);
    const T* p = x + b0;
    V<T> a0{}, a1{}, a2{}, a3{};
    int64_t i = 0;
    for (; i + 4 * N <= bn; i += 4 * N) {
      a0 += S::load(p + i); a1 += S::load(p + i + N); a2 += S::load(p + i + 2 * N); a3 += S::load(p + i + 3 * N);
    }
    for (; i < bn; i += N) a0 += ld(p + i, imin(N, bn - i));  // zero-filled tail
    total += double(hsum<T>((a0 + a1) + (a2 + a3)));
  }
  return total;
}

// s1 = sum(x - m), s2 = sum((x - m)^2) over x[0..n).
template <class T> void run_centered(const T* x, int64_t n, T m, double& s1, double& s2) {
  using S = Simd<T>;
  constexpr int N = S::N;
  s1 = 0;
  s2 = 0;
  for (int64_t b0 = 0; b0 < n; b0 += kRunBlock) {
    const int64_t bn = imin(kRunBlock, n - b0);
    const T* p = x + b0;
    V<T> a0{}, a1{}, q0{}, q1{};
    int64_t i = 0;
    for (; i + 2 * N <= bn; i += 2 * N) {
      V<T> d0 = S::load(p + i) - m, d1 = S::load(p + i + N) - m;
      a0 += d0; a1 += d1; q0 += d0 * d0; q1 += d1 * d1;
    }
    for (; i < bn; i += N) {
      const int64_t k = imin(N, bn - i);
      V<T> d = keep_first<T>(ld(p + i, k) - m, k);
      a0 += d; q0 += d * d;
    }
    s1 += double(hsum<T>(a0 + a1));
    s2 += double(hsum<T>(q0 + q1));
  }
}

// Chan et al. pairwise merge of (count, mean, m2) with a block (nb, mb, m2b).
inline void chan_merge(double& cnt, double& mean, double& m2, double nb, double mb, double m2b) {
  const double n = cnt + nb;
  if (n == 0) return;
  const double delta = mb - mean;
  mean += delta * (nb / n);
  m2 += m2b + delta * delta * (cnt * nb / n);
  cnt = n;
}

// ---------------------------------------------------------------- layer norm

// Per row: mh = sum(x)/d; s1, s2 around mh; mean = mh + c, c = s1/d; var = (s2 - s1*c)/d;
// rstd = 1/sqrt(var + eps); y = act((((x - mh) - c) * rstd) * gamma + beta).
template <class T, int ACT>
void ln_fwd_impl(const T* x, int64_t xs, T* y, int64_t ys, const T* gamma, const T* beta, T* mean, T* rstd,
                 int64_t rows, int64_t d, double eps, double slope_d, bool stream) {
  const T slope = T(slope_d);
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * xs;
    const T mh = T(run_sum<T>(xr, d) / double(d));
    double s1, s2;
    run_centered<T>(xr, d, mh, s1, s2);
    const double c = s1 / double(d);
    double var = (s2 - s1 * c) / double(d);
    if (var < 0) var = 0;
    const T rs = T(1.0 / __builtin_sqrt(var + eps));
    const T cl = T(c);
    mean[r] = T(double(mh) + c);
    rstd[r] = rs;
    write_row<T>(y + r * ys, d, stream, [&](int64_t i, int64_t k) {
      V<T> v = ((ld(xr + i, k) - mh) - cl) * rs;
      return act_fwd<T, ACT>(v * ld(gamma + i, k) + ld(beta + i, k), slope);
    });
  }
  if (stream) stream_fence();
}

// Per row, with g = dout through the activation, wdy = g * gamma, xm = x - mean:
//   a = sum(wdy), b = sum(wdy * xm), c = sum(xm)/d (residual of the saved float mean)
//   xhat = (xm - c) * rstd, b' = b - c*a
//   dx = rstd * wdy - rstd * a/d - rstd^3 * b'/d * (xm - c)
//   dgamma += g * xhat, dbeta += g  (float per kNormSubRows rows, then double)
template <class T, int ACT>
void ln_bwd_impl(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, const T* gamma,
                 const T* mean, const T* rstd, T* dx, int64_t dxs, double* part, T* scratch, int64_t rows, int64_t d,
                 double slope_d, bool stream) {
  using S = Simd<T>;
  constexpr int N = S::N;
  const T slope = T(slope_d);
  T* accg = scratch;
  T* accb = scratch ? scratch + d : nullptr;
  if (part) {
    for (int64_t j = 0; j < 2 * d; ++j) part[j] = 0;
    for (int64_t j = 0; j < 2 * d; ++j) scratch[j] = 0;
  }
  for (int64_t r = 0; r < rows; ++r) {
    const T* dr = dout + r * ds;
    const T* xr = x + r * xs;
    const T* yr = ACT ? y + r * yss : nullptr;
    const T m = mean[r];
    const T rs = rstd[r];
    double a = 0, b = 0, c = 0;
    for (int64_t b0 = 0; b0 < d; b0 += kRunBlock) {
      const int64_t bn = imin(kRunBlock, d - b0);
      V<T> va{}, vb{}, vc{};
      for (int64_t i = b0; i < b0 + bn; i += N) {
        const int64_t k = imin(N, b0 + bn - i);
        V<T> g = act_bwd<T, ACT>(ld(dr + i, k), yr + i, k, slope);
        V<T> wdy = g * ld(gamma + i, k);
        V<T> xm = keep_first<T>(ld(xr + i, k) - m, k);
        va += wdy; vb += wdy * xm; vc += xm;
      }
      a += double(hsum<T>(va)); b += double(hsum<T>(vb)); c += double(hsum<T>(vc));
    }
    const double dd = double(d);
    c /= dd;
    const double bp = b - c * a;
    const double rsd = double(rs);
    const T kx = T(-rsd * rsd * rsd * bp / dd);
    const T bb = T(-rsd * a / dd);
    const T cl = T(c);
    write_row<T>(dx + r * dxs, d, stream, [&](int64_t i, int64_t k) {
      V<T> g = act_bwd<T, ACT>(ld(dr + i, k), yr + i, k, slope);
      V<T> xmc = (ld(xr + i, k) - m) - cl;
      if (part) {
        st<T>(accg + i, ld(accg + i, k) + g * (xmc * rs), k);
        st<T>(accb + i, ld(accb + i, k) + g, k);
      }
      return (g * ld(gamma + i, k)) * rs + xmc * kx + bb;
    });
    if (part && ((r + 1) % kNormSubRows == 0 || r + 1 == rows)) {
      for (int64_t j = 0; j < 2 * d; ++j) {
        part[j] += double(scratch[j]);
        scratch[j] = 0;
      }
    }
  }
  if (stream) stream_fence();
}

// ---------------------------------------------------------------- batch norm: statistics

// Block means are kept relative to a shift K (the first block's mean, a T value): mb - K is
// exact in double, so the merged mean keeps full precision when |mean| >> std.
template <class T>
void col_stats(const T* x, int64_t xs, int64_t rows, int64_t w, double* shift, double* mean, double* m2) {
  using S = Simd<T>;
  constexpr int N = S::N;
  alignas(64) T mb[kNormColTile];
  alignas(64) T s1[kNormColTile];
  alignas(64) T s2[kNormColTile];
  for (int64_t j0 = 0; j0 < w; j0 += kNormColTile) {
    const int64_t jn = imin(kNormColTile, w - j0);
    double* ko = shift + j0;
    double* mo = mean + j0;
    double* qo = m2 + j0;
    for (int64_t j = 0; j < jn; ++j) { ko[j] = 0; mo[j] = 0; qo[j] = 0; }
    double cnt = 0;
    for (int64_t r0 = 0; r0 < rows; r0 += kNormSubRows) {
      const int64_t rn = imin(kNormSubRows, rows - r0);
      const T* xb = x + r0 * xs + j0;
      // pass 1 (from memory): column sums -> block means mb
      for (int64_t j = 0; j < jn; ++j) mb[j] = 0;
      for (int64_t r = 0; r < rn; ++r)
        for (int64_t j = 0; j < jn; j += N) {
          const int64_t k = imin(N, jn - j);
          st<T>(mb + j, ld(mb + j, k) + ld(xb + r * xs + j, k), k);
        }
      const T inv_rn = T(1) / T(rn);
      for (int64_t j = 0; j < jn; ++j) { mb[j] *= inv_rn; s1[j] = 0; s2[j] = 0; }
      if (r0 == 0)
        for (int64_t j = 0; j < jn; ++j) ko[j] = double(mb[j]);
      // pass 2 (block in cache): s1 = sum(x - mb), s2 = sum((x - mb)^2)
      for (int64_t r = 0; r < rn; ++r)
        for (int64_t j = 0; j < jn; j += N) {
          const int64_t k = imin(N, jn - j);
          V<T> dv = ld(xb + r * xs + j, k) - ld(mb + j, k);
          st<T>(s1 + j, ld(s1 + j, k) + dv, k);
          st<T>(s2 + j, ld(s2 + j, k) + dv * dv, k);
        }
      // merge the block into the running (count, mean - K, m2) of each column, in double
      const double nb = double(rn), inv = 1.0 / nb, ntot = cnt + nb;
      const double wb = nb / ntot, wab = cnt * nb / ntot;
      for (int64_t j = 0; j < jn; ++j) {
        const double a = double(s1[j]);
        const double bm = (double(mb[j]) - ko[j]) + a * inv;
        double bq = double(s2[j]) - a * a * inv;
        bq = bq < 0 ? 0 : bq;
        const double delta = bm - mo[j];
        mo[j] += delta * wb;
        qo[j] += bq + delta * delta * wab;
      }
      cnt = ntot;
    }
  }
}

template <class T>
void run_stats(const T* x, int64_t n, double* shift, double* mean, double* m2) {
  double cnt = 0, mu = 0, q = 0, kk = 0;
  for (int64_t b0 = 0; b0 < n; b0 += kRunBlock) {
    const int64_t bn = imin(kRunBlock, n - b0);
    const T mh = T(run_sum<T>(x + b0, bn) / double(bn));
    if (b0 == 0) kk = double(mh);
    double s1, s2;
    run_centered<T>(x + b0, bn, mh, s1, s2);
    double bq = s2 - s1 * s1 / double(bn);
    chan_merge(cnt, mu, q, double(bn), (double(mh) - kk) + s1 / double(bn), bq < 0 ? 0 : bq);
  }
  *shift = kk;
  *mean = mu;
  *m2 = q;
}

// ---------------------------------------------------------------- batch norm: normalise

// y = act(((x - mh) - ml) * scale + shift), per-column params.
template <class T, int ACT>
void col_apply_impl(const T* x, int64_t xs, T* y, int64_t ys, int64_t rows, int64_t w, const T* p, double slope_d,
                    bool stream) {
  const T slope = T(slope_d);
  const T *mh = p, *ml = p + w, *sc = p + 2 * w, *sh = p + 3 * w;
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * xs;
    write_row<T>(y + r * ys, w, stream, [&](int64_t i, int64_t k) {
      V<T> v = ((ld(xr + i, k) - ld(mh + i, k)) - ld(ml + i, k)) * ld(sc + i, k) + ld(sh + i, k);
      return act_fwd<T, ACT>(v, slope);
    });
  }
  if (stream) stream_fence();
}

template <class T, int ACT>
void run_apply_impl(const T* x, T* y, int64_t n, const T* p, double slope_d, bool stream) {
  const T slope = T(slope_d);
  const T mh = p[0], ml = p[1], sc = p[2], sh = p[3];
  write_row<T>(y, n, stream, [&](int64_t i, int64_t k) {
    return act_fwd<T, ACT>(((ld(x + i, k) - mh) - ml) * sc + sh, slope);
  });
  if (stream) stream_fence();
}

// ---------------------------------------------------------------- batch norm: backward

// Per column: sum g, sum g*(x - m), sum (x - m); float per kNormSubRows rows, double across.
template <class T, int ACT>
void col_bwd_reduce_impl(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, int64_t rows,
                         int64_t w, const T* m, double* out3, double slope_d) {
  using S = Simd<T>;
  constexpr int N = S::N;
  const T slope = T(slope_d);
  alignas(64) T ag[kNormColTile];
  alignas(64) T agx[kNormColTile];
  alignas(64) T ax[kNormColTile];
  for (int64_t j = 0; j < 3 * w; ++j) out3[j] = 0;
  for (int64_t j0 = 0; j0 < w; j0 += kNormColTile) {
    const int64_t jn = imin(kNormColTile, w - j0);
    for (int64_t r0 = 0; r0 < rows; r0 += kNormSubRows) {
      const int64_t rn = imin(kNormSubRows, rows - r0);
      for (int64_t j = 0; j < jn; ++j) { ag[j] = 0; agx[j] = 0; ax[j] = 0; }
      for (int64_t r = r0; r < r0 + rn; ++r) {
        const T* dr = dout + r * ds + j0;
        const T* xr = x + r * xs + j0;
        const T* yr = ACT ? y + r * yss + j0 : nullptr;
        for (int64_t j = 0; j < jn; j += N) {
          const int64_t k = imin(N, jn - j);
          V<T> g = act_bwd<T, ACT>(ld(dr + j, k), yr + j, k, slope);
          V<T> xm = ld(xr + j, k) - ld(m + j0 + j, k);
          st<T>(ag + j, ld(ag + j, k) + g, k);
          st<T>(agx + j, ld(agx + j, k) + g * xm, k);
          st<T>(ax + j, ld(ax + j, k) + xm, k);
        }
      }
      for (int64_t j = 0; j < jn; ++j) {
        out3[j0 + j] += double(ag[j]);
        out3[w + j0 + j] += double(agx[j]);
        out3[2 * w + j0 + j] += double(ax[j]);
      }
    }
  }
}

template <class T, int ACT>
void run_bwd_reduce_impl(const T* dout, const T* x, const T* y, int64_t n, T m, double* out3, double slope_d) {
  using S = Simd<T>;
  constexpr int N = S::N;
  const T slope = T(slope_d);
  double sg = 0, sgx = 0, sx = 0;
  for (int64_t b0 = 0; b0 < n; b0 += kRunBlock) {
    const int64_t bn = imin(kRunBlock, n - b0);
    V<T> ag{}, agx{}, ax{};
    for (int64_t i = b0; i < b0 + bn; i += N) {
      const int64_t k = imin(N, b0 + bn - i);
      V<T> g = act_bwd<T, ACT>(ld(dout + i, k), ACT ? y + i : nullptr, k, slope);
      V<T> xm = keep_first<T>(ld(x + i, k) - m, k);
      ag += g; agx += g * xm; ax += xm;
    }
    sg += double(hsum<T>(ag)); sgx += double(hsum<T>(agx)); sx += double(hsum<T>(ax));
  }
  out3[0] = sg;
  out3[1] = sgx;
  out3[2] = sx;
}

// dx = A*g + K*((x - mh) - ml) + B
template <class T, int ACT>
void col_bwd_apply_impl(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, T* dx,
                        int64_t dxs, int64_t rows, int64_t w, const T* p, double slope_d, bool stream) {
  const T slope = T(slope_d);
  const T *mh = p, *ml = p + w, *pa = p + 2 * w, *pk = p + 3 * w, *pb = p + 4 * w;
  for (int64_t r = 0; r < rows; ++r) {
    const T* dr = dout + r * ds;
    const T* xr = x + r * xs;
    const T* yr = ACT ? y + r * yss : nullptr;
    write_row<T>(dx + r * dxs, w, stream, [&](int64_t i, int64_t k) {
      V<T> g = act_bwd<T, ACT>(ld(dr + i, k), yr + i, k, slope);
      V<T> xmc = (ld(xr + i, k) - ld(mh + i, k)) - ld(ml + i, k);
      return g * ld(pa + i, k) + xmc * ld(pk + i, k) + ld(pb + i, k);
    });
  }
  if (stream) stream_fence();
}

template <class T, int ACT>
void run_bwd_apply_impl(const T* dout, const T* x, const T* y, T* dx, int64_t n, const T* p, double slope_d,
                        bool stream) {
  const T slope = T(slope_d);
  const T mh = p[0], ml = p[1], pa = p[2], pk = p[3], pb = p[4];
  write_row<T>(dx, n, stream, [&](int64_t i, int64_t k) {
    V<T> g = act_bwd<T, ACT>(ld(dout + i, k), ACT ? y + i : nullptr, k, slope);
    return g * pa + ((ld(x + i, k) - mh) - ml) * pk + pb;
  });
  if (stream) stream_fence();
}

// ---------------------------------------------------------------- activation dispatch

#define NK_NORM_DISPATCH(FN, ...)                                        \
  switch (act) {                                                         \
    case kNormActRelu: FN<T, kNormActRelu>(__VA_ARGS__); break;          \
    case kNormActLeakyRelu: FN<T, kNormActLeakyRelu>(__VA_ARGS__); break; \
    default: FN<T, kNormActNone>(__VA_ARGS__); break;                    \
  }

template <class T>
void ln_fwd(const T* x, int64_t xs, T* y, int64_t ys, const T* gamma, const T* beta, T* mean, T* rstd, int64_t rows,
            int64_t d, double eps, int act, double slope, bool stream) {
  NK_NORM_DISPATCH(ln_fwd_impl, x, xs, y, ys, gamma, beta, mean, rstd, rows, d, eps, slope, stream)
}
template <class T>
void ln_bwd(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, const T* gamma,
            const T* mean, const T* rstd, T* dx, int64_t dxs, double* part, T* scratch, int64_t rows, int64_t d,
            int act, double slope, bool stream) {
  NK_NORM_DISPATCH(ln_bwd_impl, dout, ds, x, xs, y, yss, gamma, mean, rstd, dx, dxs, part, scratch, rows, d, slope,
                   stream)
}
template <class T>
void col_apply(const T* x, int64_t xs, T* y, int64_t ys, int64_t rows, int64_t w, const T* p, int act, double slope,
               bool stream) {
  NK_NORM_DISPATCH(col_apply_impl, x, xs, y, ys, rows, w, p, slope, stream)
}
template <class T>
void run_apply(const T* x, T* y, int64_t n, const T* p, int act, double slope, bool stream) {
  NK_NORM_DISPATCH(run_apply_impl, x, y, n, p, slope, stream)
}
template <class T>
void col_bwd_reduce(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, int64_t rows,
                    int64_t w, const T* m, double* out3, int act, double slope) {
  NK_NORM_DISPATCH(col_bwd_reduce_impl, dout, ds, x, xs, y, yss, rows, w, m, out3, slope)
}
template <class T>
void run_bwd_reduce(const T* dout, const T* x, const T* y, int64_t n, T m, double* out3, int act, double slope) {
  NK_NORM_DISPATCH(run_bwd_reduce_impl, dout, x, y, n, m, out3, slope)
}
template <class T>
void col_bwd_apply(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, T* dx, int64_t dxs,
                   int64_t rows, int64_t w, const T* p, int act, double slope, bool stream) {
  NK_NORM_DISPATCH(col_bwd_apply_impl, dout, ds, x, xs, y, yss, dx, dxs, rows, w, p, slope, stream)
}
template <class T>
void run_bwd_apply(const T* dout, const T* x, const T* y, T* dx, int64_t n, const T* p, int act, double slope,
                   bool stream) {
  NK_NORM_DISPATCH(run_bwd_apply_impl, dout, x, y, dx, n, p, slope, stream)
}
#undef NK_NORM_DISPATCH

template <class T> constexpr NormKernelsT<T> make_table() {
  return NormKernelsT<T>{&ln_fwd<T>,    &ln_bwd<T>,         &col_stats<T>,      &run_stats<T>,
                         &col_apply<T>, &run_apply<T>,      &col_bwd_reduce<T>, &run_bwd_reduce<T>,
                         &col_bwd_apply<T>, &run_bwd_apply<T>};
}

}  // namespace
NK_KERNEL_NAMESPACE_END

NK_DEFINE_ISA_TABLE(NormalizationKernels, normalization_kernels) = {
    nk::NK_ISA_NS::make_table<float>(),
    nk::NK_ISA_NS::make_table<double>(),
};
