// Normalization kernels: layer norm and batch norm, forward and backward, with an optional
// fused ReLU / leaky ReLU, float32/float64, one SIMD source compiled per ISA level; also on
// float16/bfloat16 storage (x, y, dout, dx; core/simd.hpp's conversions): arithmetic, gamma/beta,
// mean/rstd, kernel parameters and float accumulators in float32 (compute_t), results rounded once
// on store.
// Reference: nnkernels.reference.normalization. CUDA twin: csrc/cuda/normalization.cu.
// Host side (threads, fixed chunks, partial combination): csrc/drivers/normalization.cpp.
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

#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/chan.hpp"
#include "core/simd.hpp"

NK_KERNEL_NAMESPACE_BEGIN
namespace {

// V<T>: a vector of the arithmetic type of T (float for the 16-bit storage types). Storage types
// (X below: x, y, dout, dx) are read and written through ld/st/Storage<X>; C = compute_t<X> is the
// type of everything else (statistics, gamma/beta, scratch).
template <class T> using V = typename Simd<compute_t<T>>::V;

constexpr int64_t kRunBlock = 4096;    // elements of a row/plane reduced in float before going to double
constexpr int64_t kLnGroupMaxD = 512;  // layer-norm rows up to this length are written four at a time

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

// Loop bodies are lambdas called from several sites (full vectors, head, tail): NK_AI (core/simd.hpp).

template <class T> NK_AI inline V<T> splat(T s) { return Simd<T>::splat(s); }
template <class X> NK_AI inline V<X> ld(const X* p, int64_t k) {
  return k == Storage<X>::N ? Storage<X>::load(p) : Storage<X>::load_partial(p, k);
}
template <class X> NK_AI inline void st(X* p, V<X> v, int64_t k) {
  if (k == Storage<X>::N) Storage<X>::store(p, v); else Storage<X>::store_partial(p, v, k);
}
// Horizontal sum as a tree over vector halves (log-depth, not a serial chain of N adds).
template <class T, int B> struct HSum {
  typedef T W __attribute__((vector_size(B)));
  static inline T run(W v) {
    if constexpr (B <= 16) {
      if constexpr (B == 16 && sizeof(T) == 4) return (v[0] + v[2]) + (v[1] + v[3]);
      else return v[0] + v[1];
    } else {
      typedef T H __attribute__((vector_size(B / 2)));
      H lo, hi;
      __builtin_memcpy(&lo, &v, B / 2);
      __builtin_memcpy(&hi, reinterpret_cast<const char*>(&v) + B / 2, B / 2);
      return HSum<T, B / 2>::run(lo + hi);
    }
  }
};
template <class T> inline T hsum(V<T> v) { return HSum<T, kVecBytes>::run(v); }
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
template <class T, int ACT, class Y> inline V<T> act_bwd(V<T> dout, const Y* y, int64_t k, T slope) {
  if constexpr (ACT == kNormActRelu) return ld(y, k) > T(0) ? dout : V<T>{};
  else if constexpr (ACT == kNormActLeakyRelu) return ld(y, k) > T(0) ? dout : dout * slope;
  else return dout;
}

// y[0..n) = f(i, k) for vector blocks (k lanes valid). With `stream`, non-temporal stores
// after peeling to the vector alignment of y (caller fences).
template <class X, class F> NK_AI inline void write_row(X* y, int64_t n, bool stream, F&& f) {
  using S = Storage<X>;
  int64_t i = 0;
  if (stream) {
    const uintptr_t mis = reinterpret_cast<uintptr_t>(y) % uintptr_t(S::kBytes);
    if (mis % sizeof(X) == 0) {
      if (mis != 0) {
        int64_t head = int64_t((uintptr_t(S::kBytes) - mis) / sizeof(X));
        if (head > n) head = n;
        S::store_partial(y, f(int64_t(0), head), head);
        i = head;
      }
      for (; i + S::N <= n; i += S::N) S::stream(y + i, f(i, int64_t(S::N)));
    }
  }
  for (; i + S::N <= n; i += S::N) S::store(y + i, f(i, int64_t(S::N)));
  if (i < n) S::store_partial(y + i, f(i, n - i), n - i);
}

// Column loop over [0, w) for the accumulating column kernels: f(j, k) on full vectors
// (k == N, folded into plain loads/stores) then on a partial tail.
template <class T, class F> NK_AI inline void col_loop(int64_t w, F&& f) {
  using S = Storage<T>;
  int64_t j = 0;
  for (; j + S::N <= w; j += S::N) f(j, int64_t(S::N));
  if (j < w) f(j, w - j);
}

// One walk over n elements in blocks of kRunBlock (float lanes within a block, double across
// blocks), four accumulators per quantity: with SUM, sum = sum(xs[0..n)); with CENTRED,
// s1 = sum(xc - m) and s2 = sum((xc - m)^2). each_vector() runs once per vector read (of xs with
// SUM, else of xc; stream_row writes a vector of another row there). run_sum, run_centered and stream_row's loop
// are all this walk, so a row's statistics have the same bits whichever loop computed them.
// bfloat16 reads pairs (core/simd.hpp: no shuffles; the lanes hold the elements in another order,
// which a sum does not see), two per step of the four accumulators where the other types read four
// vectors.
template <class T> struct Quad {
  V<T> v[4];
};
template <class T> NK_AI inline Quad<T> load4(const T* p) {
  constexpr int N = Storage<T>::N;
  if constexpr (std::is_same_v<T, bfloat16_t>) {
    const Bf16Pair u = load_bf16_pair(p), w = load_bf16_pair(p + 2 * N);
    return {{u.even, u.odd, w.even, w.odd}};
  } else {
    return {{Storage<T>::load(p), Storage<T>::load(p + N), Storage<T>::load(p + 2 * N), Storage<T>::load(p + 3 * N)}};
  }
}
template <class T, bool SUM, bool CENTRED, class G>
NK_AI inline void run_walk(const T* xs, const T* xc, int64_t n, compute_t<T> m, double& sum, double& s1, double& s2,
                           G&& each_vector) {
  using C = compute_t<T>;
  constexpr int N = Storage<T>::N;
  constexpr bool kPairs = std::is_same_v<T, bfloat16_t>;
  constexpr int kTail = kPairs ? 2 * N : N;  // elements per step of the tail loop
  sum = s1 = s2 = 0;
  for (int64_t b0 = 0; b0 < n; b0 += kRunBlock) {
    const int64_t bn = imin(kRunBlock, n - b0);
    V<T> a[4] = {}, c[4] = {}, q[4] = {};
    int64_t i = 0;
    for (; i + 4 * N <= bn; i += 4 * N) {
      if constexpr (SUM) {
        const Quad<T> u = load4(xs + b0 + i);
        for (int j = 0; j < 4; ++j) a[j] += u.v[j];
        each_vector(); each_vector(); each_vector(); each_vector();
      }
      if constexpr (CENTRED) {
        const Quad<T> u = load4(xc + b0 + i);
        for (int j = 0; j < 4; ++j) {
          const V<T> d = u.v[j] - m;
          c[j] += d;
          q[j] = fmadd(d, d, q[j]);
        }
        if constexpr (!SUM) { each_vector(); each_vector(); each_vector(); each_vector(); }
      }
    }
    for (; i < bn; i += kTail) {
      const int64_t k = imin(kTail, bn - i);  // zero-filled past k
      if constexpr (kPairs) {
        if constexpr (SUM) {
          const Bf16Pair u = k == kTail ? load_bf16_pair(xs + b0 + i) : load_bf16_pair_partial(xs + b0 + i, k);
          a[0] += u.even; a[1] += u.odd;
          each_vector();
          if (k > N) each_vector();
        }
        if constexpr (CENTRED) {
          const Bf16Pair u = k == kTail ? load_bf16_pair(xc + b0 + i) : load_bf16_pair_partial(xc + b0 + i, k);
          const V<T> d0 = keep_first<C>(u.even - m, (k + 1) / 2), d1 = keep_first<C>(u.odd - m, k / 2);  // elements 2j, 2j + 1
          c[0] += d0; c[1] += d1;
          q[0] = fmadd(d0, d0, q[0]); q[1] = fmadd(d1, d1, q[1]);
          if constexpr (!SUM) {
            each_vector();
            if (k > N) each_vector();
          }
        }
      } else {
        if constexpr (SUM) {
          a[0] += ld(xs + b0 + i, k);
          each_vector();
        }
        if constexpr (CENTRED) {
          const V<T> d = keep_first<C>(ld(xc + b0 + i, k) - m, k);
          c[0] += d;
          q[0] = fmadd(d, d, q[0]);
          if constexpr (!SUM) each_vector();
        }
      }
    }
    if constexpr (SUM) sum += double(hsum<C>((a[0] + a[1]) + (a[2] + a[3])));
    if constexpr (CENTRED) {
      s1 += double(hsum<C>((c[0] + c[1]) + (c[2] + c[3])));
      s2 += double(hsum<C>((q[0] + q[1]) + (q[2] + q[3])));
    }
  }
}
template <class T> double run_sum(const T* x, int64_t n) {
  double sum, s1, s2;
  run_walk<T, true, false>(x, nullptr, n, compute_t<T>(0), sum, s1, s2, []() NK_AI {});
  return sum;
}
// s1 = sum(x - m), s2 = sum((x - m)^2) over x[0..n).
template <class T> void run_centered(const T* x, int64_t n, compute_t<T> m, double& s1, double& s2) {
  double sum;
  run_walk<T, false, true>(nullptr, x, n, m, sum, s1, s2, []() NK_AI {});
}

// ---------------------------------------------------------------- layer norm

// The first pass over a layer-norm row. float32/float64 rows (memory-bound at DRAM sizes): its sum,
// for the centred pass around mh = sum/d. 16-bit rows, whose conversions make the kernel
// compute-bound (two passes over a 2 KB row cost as much as its DRAM traffic: measured on the
// 2-core EPYC, skipping the centred pass took bf16 (65536, 1024) from 10 to 7-8.5 ms): s1 and s2
// around a shift K in one pass, K the mean of the row's first kShiftElems elements rounded to the
// storage type. The shifted sums give the variance as (s2 - s1^2/d)/d, which loses accuracy only
// as far as K is off the mean: with (mean - K)^2 = f * var, the cancellation costs a factor 1 + f.
// The row keeps the shifted result when 3 s1^2/d <= s2 (f <= 1/2; K of 32 Gaussian values is that
// far off with probability 6e-5) and everything is finite; otherwise (a row start far from the
// row's mean, an overflow, a NaN or an infinity) the row takes the two passes of the
// float32/float64 rows, with their bits. K on the storage grid makes x - K exact and short, so
// most squares are exact too; a float32 K (a 12-bit mean of bfloat16 values) gave the squares
// correlated rounding errors: rstd 25-50 float32 ulps off on rows of 4099 at the baseline level.
// Measured against float64 with K rounded (rows of 5 to 20000, every ISA level, starts up to f =
// 1/2): rstd within 5 ulps (bfloat16) and 9 ulps (float16), where the float32 two-pass on the
// same values is within 9. (Chan, Golub & LeVeque 1983, "Algorithms for computing the sample
// variance: analysis and recommendations", on shifted data.)
template <class X> constexpr bool kShiftedStats = sizeof(X) == 2;
constexpr int64_t kShiftElems = 32;
struct RowSums {
  double sum = 0, s1 = 0, s2 = 0;  // sum (kShiftedStats false) or s1, s2 around k
  float k = 0;
};
template <class X> NK_AI inline compute_t<X> row_shift(const X* x, int64_t n) {
  using C = compute_t<X>;
  const int64_t m = imin(n, kShiftElems);
  V<X> v{};
  if constexpr (std::is_same_v<X, bfloat16_t>) {
    for (int64_t i = 0; i < m; i += kBf16PairElems) {
      const int64_t k = imin(kBf16PairElems, m - i);
      const Bf16Pair u = k == kBf16PairElems ? load_bf16_pair(x + i) : load_bf16_pair_partial(x + i, k);
      v += u.even + u.odd;
    }
  } else {
    for (int64_t i = 0; i < m; i += Storage<X>::N) v += ld(x + i, imin(Storage<X>::N, m - i));
  }
  return Storage<X>::round(splat(hsum<C>(v) / C(m)))[0];  // rounded to X (see above)
}
template <class X, class G> NK_AI inline RowSums row_sums(const X* x, int64_t n, G&& each_vector) {
  RowSums r;
  double unused;
  if constexpr (kShiftedStats<X>) {
    r.k = row_shift(x, n);
    run_walk<X, false, true>(nullptr, x, n, r.k, unused, r.s1, r.s2, each_vector);
  } else {
    double s1, s2;
    run_walk<X, true, false>(x, nullptr, n, compute_t<X>(0), r.sum, s1, s2, each_vector);
  }
  return r;
}
template <class X> inline RowSums row_sums(const X* x, int64_t n) { return row_sums(x, n, []() NK_AI {}); }

// Per row: mh = sum(x)/d; s1, s2 around mh; mean = mh + c, c = s1/d; var = (s2 - s1*c)/d;
// rstd = 1/sqrt(var + eps); xhat = (x - mh)*rstd - c*rstd; y = act(xhat * gamma + beta)
// (AFF false: gamma and beta are None, y = act(xhat)). x - mh is exact for x near the mean, and
// a constant row gives xhat = 0 exactly (so y = beta). xhat is one FMA after the subtraction.
// Output formulas use fmadd (core/simd.hpp), so full and partial vectors round alike.
template <class T> struct LnRow {
  T mh, rs, nb;  // xhat = (x - mh) * rs + nb
};
// Statistics of G rows x + g*xs (g < G), phase by phase: the G first passes (row_sums), the G
// centred sums where needed, then the G square roots and divisions side by side. The rows'
// dependency chains (sum -> centred sums -> sqrt -> divide, ~150 cycles on a 256-element row)
// overlap instead of running one after the other; every row's result is the same as when it is
// computed alone. ln_rows_finish is the part after the first passes (given as RowSums).
// A row whose fast statistics cannot be right (wide_needed, normalization.hpp): its mean, rstd
// and output coefficients from wide_stats, for the same output loops. Rows with a NaN or an
// infinity keep the fast results.
template <class X, class T = compute_t<X>>
__attribute__((noinline, cold)) void ln_row_wide(const X* x, int64_t d, double eps, T* mean, T* rstd, LnRow<T>* p) {
  using W = WideOf<T>;
  const WideStats<T> s = wide_stats<T>(d, [x](int64_t i) { return load_one(x + i); });
  if (!s.finite) return;
  const T mh = wide_center<T>(s);
  const T rs = T(W(1) / std::sqrt(s.m2 / W(d) + W(eps)));
  const W off = s.mean - W(mh);
  p->mh = mh;
  p->rs = rs;
  p->nb = off == 0 ? T(0) : T(-off * W(rs));
  *mean = T(s.mean);
  *rstd = rs;
}
// Row statistics from p[g].mh, c = mean - mh and the variance v (s2: the sum of squares they came
// from, for wide_needed; G rows side by side).
template <class X, int G, class T = compute_t<X>>
NK_AI inline void ln_rows_from_sums(const X* x, int64_t xs, int64_t d, const double* c, const double* v,
                                    const double* s2, double eps, T* mean, T* rstd, LnRow<T>* p) {
  double rs[G];
  for (int g = 0; g < G; ++g) rs[g] = 1.0 / __builtin_sqrt((v[g] < 0 ? 0.0 : v[g]) + eps);
  for (int g = 0; g < G; ++g) {
    p[g].rs = T(rs[g]);
    p[g].nb = -(T(c[g]) * p[g].rs);
    mean[g] = T(double(p[g].mh) + c[g]);
    rstd[g] = p[g].rs;
  }
  for (int g = 0; g < G; ++g)
    if (__builtin_expect(wide_needed<T>(s2[g], v[g], c[g], eps), 0)) ln_row_wide<X>(x + g * xs, d, eps, mean + g, rstd + g, p + g);
}
// The rest of G rows' statistics after their first passes (row_sums): a 16-bit row whose shifted
// sums pass the test above takes mh = T(k + s1/d) from them; any other row the centred pass
// around mh = T(sum/d) (after its sum, for a 16-bit row).
template <class X, int G, class T = compute_t<X>>
NK_AI inline void ln_rows_finish(const X* x, int64_t xs, int64_t d, const RowSums* rsum, double inv_d, double eps,
                                 T* mean, T* rstd, LnRow<T>* p) {
  double c[G], v[G], s2[G];
  for (int g = 0; g < G; ++g) {
    const RowSums& r = rsum[g];
    if constexpr (kShiftedStats<X>) {
      const double off = r.s1 * inv_d;
      if (__builtin_expect(3 * (r.s1 * off) <= r.s2, 1)) {  // false for a NaN or an inf in s1 or s2
        p[g].mh = T(double(r.k) + off);
        c[g] = (double(r.k) - double(p[g].mh)) + off;
        v[g] = (r.s2 - r.s1 * off) * inv_d;
        s2[g] = r.s2;
        continue;
      }
    }
    const double sum = kShiftedStats<X> ? run_sum<X>(x + g * xs, d) : r.sum;
    double s1;
    p[g].mh = T(sum * inv_d);
    run_centered<X>(x + g * xs, d, p[g].mh, s1, s2[g]);
    c[g] = s1 * inv_d;
    v[g] = (s2[g] - s1 * c[g]) * inv_d;
  }
  ln_rows_from_sums<X, G>(x, xs, d, c, v, s2, eps, mean, rstd, p);
}
template <class X, int G, class T = compute_t<X>>
NK_AI inline void ln_rows_stats(const X* x, int64_t xs, int64_t d, double inv_d, double eps, T* mean, T* rstd,
                                LnRow<T>* p) {
  RowSums sums[G];
  for (int g = 0; g < G; ++g) sums[g] = row_sums<X>(x + g * xs, d);
  ln_rows_finish<X, G>(x, xs, d, sums, inv_d, eps, mean, rstd, p);
}
// Streamed rows of a contiguous output (row r + 1 starts where row r ends, rows of at least
// two vectors; see rows_streamable): row r's y[0..n) = f(i, k) goes out with non-temporal
// stores only, in the same loop as row_sums(xn, n) of the next row, which is returned (run_walk:
// the same bits). The loop streams DRAM reads and writes together, as a copy does, instead of a
// read phase and a write phase per row. When y is not vector-aligned, the
// vector line shared by the end of one row and the start of the next is assembled in `line`
// (pend: elements of the previous row waiting there) and streamed once, instead of two
// partial cached stores per row (measured: 19.9 vs 13.7 ms for a misaligned vs an aligned
// (65536, 1024) float32 out). The chunk's first head and last tail use cached stores (the
// other part of their lines belongs to another chunk). y must be aligned to its element size.
template <class T> inline bool rows_streamable(const T* y, int64_t ys, int64_t n, bool stream) {
  return stream && ys == n && n >= 2 * Storage<T>::N && reinterpret_cast<uintptr_t>(y) % sizeof(T) == 0;
}
// A row writer in bfloat16 pairs as well (pair_fn(i): the Bf16Pair of elements [i, i + 2N)):
// stream_row streams it wherever y + i is kVecBytes-aligned, else f's vectors.
struct NoPairs {};  // stream_row without one
template <class T, class F, class P = NoPairs>
NK_AI inline RowSums stream_row(T* y, int64_t n, const T* xn, bool last, T* line, int64_t& pend, F&& f,
                                P&& pair_fn = P{}) {
  using S = Storage<T>;
  constexpr bool kPairs = !std::is_same_v<std::decay_t<P>, NoPairs>;  // bfloat16 (kRowPairs)
  constexpr int N = S::N;
  const uintptr_t mis = reinterpret_cast<uintptr_t>(y) % uintptr_t(S::kBytes);
  int64_t w = mis == 0 ? 0 : int64_t((uintptr_t(S::kBytes) - mis) / sizeof(T));  // write cursor, < N <= n / 2
  if (w > 0) {
    if (pend > 0) {  // pend + w == N: the line starting at y - pend (16-bit: re-rounding is exact)
      S::store_partial(line + pend, f(int64_t(0), w), w);
      S::stream(y - pend, S::load(line));
    } else {
      S::store_partial(y, f(int64_t(0), w), w);
    }
  }
  pend = 0;
  auto put = [&]() NK_AI {
    if constexpr (kPairs) {
      if (w + kBf16PairElems <= n && reinterpret_cast<uintptr_t>(y + w) % uintptr_t(kVecBytes) == 0) {
        if (xn) prefetch_stream_input(xn + w);
        stream_bf16_pair(y + w, pair_fn(w));
        w += kBf16PairElems;
        return;
      }
    }
    if (w + N <= n) {
      if (xn) prefetch_stream_input(xn + w);
      S::stream(y + w, f(w, int64_t(N)));
      w += N;
    }
  };
  RowSums sums;
  if (xn) sums = row_sums<T>(xn, n, put);
  while (w + N <= n) put();
  if (w < n) {
    const int64_t k = n - w;
    if (last) {
      S::store_partial(y + w, f(w, k), k);
    } else {
      S::store_partial(line, f(w, k), k);
      pend = k;
    }
  }
  return sums;
}
// bfloat16 rows of the normalisation outputs (layer norm, batch norm's apply) are written in pairs
// (Bf16Pair: one integer operation per float32 vector loaded, none to pack the stores) below
// AVX-512, where packing costs two shuffles per vector. Measured on the 2-core EPYC (Zen 2, AVX2), bfloat16 (65536, 1024) with bfloat16
// gamma/beta, interleaved runs, bits unchanged: 39.4-40.3 -> 33.7-33.9 ms on 1 thread, 19.6-23.9
// -> 16.9-22.3 ms on 2 (copy 17.7-18.3). At the AVX-512 level (Zen 4, VCVTNE2PS2BF16 packs two
// vectors in one instruction) the same pairs measured no faster (0.20-0.22 vs 0.20 ns/element on one
// thread), so that level keeps Storage's layout.
template <class X> constexpr bool kRowPairs = std::is_same_v<X, bfloat16_t> && kVecBytes < 64;

// K per-column arrays of length d split by element parity for the pair writers: [a0 even | a0 odd
// | a1 even | a1 odd | ...], h = ceil(d / 2) each (on the stack up to 6144 elements). ON false:
// nothing.
template <class T, bool ON, int K> class ParitySplit {
 public:
  ParitySplit(const T* const (&)[K], int64_t) {}
  const T* data() const { return nullptr; }
};
template <class T, int K> class ParitySplit<T, true, K> {
 public:
  ParitySplit(const T* const (&arrays)[K], int64_t d) {
    const int64_t h = (d + 1) / 2;
    if (2 * K * h > kStackElems) {
      heap_.resize(size_t(2 * K * h));
      data_ = heap_.data();
    }
    for (int a = 0; a < K; ++a) {
      T* out = data_ + 2 * a * h;
      for (int64_t i = 0; i < d; ++i) out[(i & 1) * h + (i >> 1)] = arrays[a][i];
      if (d & 1) out[2 * h - 1] = T(0);  // the odd half's unused last slot
    }
  }
  ParitySplit(const ParitySplit&) = delete;
  ParitySplit& operator=(const ParitySplit&) = delete;
  const T* data() const { return data_; }

 private:
  static constexpr int64_t kStackElems = 6144;
  alignas(64) T stack_[kStackElems];
  std::vector<T> heap_;
  T* data_ = stack_;
};

// y[0..n) in bfloat16 pairs pf(i) (cached stores), then f's vectors for the rest.
template <class F, class P> NK_AI inline void write_row_pairs(bfloat16_t* y, int64_t n, F&& f, P&& pf) {
  using S = Storage<bfloat16_t>;
  int64_t i = 0;
  for (; i + kBf16PairElems <= n; i += kBf16PairElems) store_bf16_pair(y + i, pf(i));
  for (; i + S::N <= n; i += S::N) S::store(y + i, f(i, int64_t(S::N)));
  if (i < n) S::store_partial(y + i, f(i, n - i), n - i);
}

// Rows r < rows of y (row pitch ys): y[r][0..n) = f(r, i, k). Streamed rows of a contiguous y
// go through stream_row (non-temporal stores only, lines shared by two rows assembled once);
// the caller fences.
// With a pair writer (bfloat16, kRowPairs), pf(r, odd) is row r's: pf(r, odd)(i) the Bf16Pair of
// elements [i, i + 2N) for i of parity odd.
template <class T, class F, class PF = NoPairs>
NK_AI inline void write_rows(T* y, int64_t ys, int64_t rows, int64_t n, bool stream, F&& f, PF&& pf = PF{}) {
  constexpr bool kPairs = !std::is_same_v<std::decay_t<PF>, NoPairs>;
  if (rows_streamable(y, ys, n, stream)) {
    alignas(64) T line[Storage<T>::N];
    int64_t pend = 0;
    for (int64_t r = 0; r < rows; ++r) {
      T* yr = y + r * ys;
      auto fr = [&](int64_t i, int64_t k) NK_AI { return f(r, i, k); };
      if constexpr (kPairs)  // pairs where yr + i is vector-aligned: i of yr's element parity
        stream_row<T>(yr, n, nullptr, r + 1 == rows, line, pend, fr, pf(r, (reinterpret_cast<uintptr_t>(yr) / sizeof(T)) & 1));
      else
        stream_row<T>(yr, n, nullptr, r + 1 == rows, line, pend, fr);
    }
  } else {
    for (int64_t r = 0; r < rows; ++r) {
      auto fr = [&](int64_t i, int64_t k) NK_AI { return f(r, i, k); };
      if constexpr (kPairs) {
        if (!stream) {
          write_row_pairs(y + r * ys, n, fr, pf(r, false));
          continue;
        }
      }
      write_row<T>(y + r * ys, n, stream, fr);
    }
  }
}

template <class T, int ACT, bool AFF>
NK_AI inline V<T> ln_out(V<T> xv, const LnRow<T>& p, V<T> gv, V<T> bv, T slope) {
  V<T> v = fmadd(xv - p.mh, splat(p.rs), splat(p.nb));
  if constexpr (AFF) v = fmadd(v, gv, bv);
  return act_fwd<T, ACT>(v, slope);
}

template <class X, int ACT, bool AFF, class T = compute_t<X>>
void ln_fwd_impl(const X* x, int64_t xs, X* y, int64_t ys, const T* gamma, const T* beta, T* mean, T* rstd,
                 int64_t rows, int64_t d, double eps, double slope_d, bool stream) {
  const T slope = T(slope_d);
  const double inv_d = 1.0 / double(d);
  int64_t r0 = 0;
  if constexpr (AFF) {
    if (!stream && d <= kLnGroupMaxD) {
      // Short rows, four at a time: each row's statistics, then one write loop over the four
      // rows sharing each gamma/beta load (the write pass's loads dominate short rows).
      for (; r0 + 4 <= rows; r0 += 4) {
        LnRow<T> p[4];
        ln_rows_stats<X, 4>(x + r0 * xs, xs, d, inv_d, eps, mean + r0, rstd + r0, p);
        const X *x0 = x + r0 * xs, *x1 = x0 + xs, *x2 = x1 + xs, *x3 = x2 + xs;
        X *y0 = y + r0 * ys, *y1 = y0 + ys, *y2 = y1 + ys, *y3 = y2 + ys;
        col_loop<X>(d, [&](int64_t i, int64_t k) NK_AI {
          const V<T> gv = ld(gamma + i, k), bv = ld(beta + i, k);
          st<X>(y0 + i, ln_out<T, ACT, AFF>(ld(x0 + i, k), p[0], gv, bv, slope), k);
          st<X>(y1 + i, ln_out<T, ACT, AFF>(ld(x1 + i, k), p[1], gv, bv, slope), k);
          st<X>(y2 + i, ln_out<T, ACT, AFF>(ld(x2 + i, k), p[2], gv, bv, slope), k);
          st<X>(y3 + i, ln_out<T, ACT, AFF>(ld(x3 + i, k), p[3], gv, bv, slope), k);
        });
      }
    }
  }
  auto out_fn = [&](const X* xr, LnRow<T> p) NK_AI {
    return [&, xr, p](int64_t i, int64_t k) NK_AI {
      if constexpr (AFF) return ln_out<T, ACT, AFF>(ld(xr + i, k), p, ld(gamma + i, k), ld(beta + i, k), slope);
      else return ln_out<T, ACT, AFF>(ld(xr + i, k), p, V<T>{}, V<T>{}, slope);
    };
  };
  // Rows written in bfloat16 pairs (kRowPairs): gamma and beta of the pair at i are at (i >> 1) + l
  // of their parity-split copies (elements i + 2l in .even, i + 1 + 2l in .odd), from bases set by
  // the parity of i (odd), the same for every pair of a row.
  // (Nothing to split when the four-row writer above took every row.)
  [[maybe_unused]] ParitySplit<T, kRowPairs<X> && AFF, 2> split({gamma, beta}, r0 < rows ? d : 0);
  auto pair_fn = [&](const auto* xr, LnRow<T> p, bool odd) NK_AI {  // generic: instantiated for kRowPairs only
    const int64_t h = (d + 1) / 2;
    const T* ge = split.data() + (odd ? h : 0);  // gamma of the .even lanes, at i >> 1 (beta: + 2h)
    const T* go = split.data() + (odd ? 1 : h);  // gamma of the .odd lanes
    return [xr, p, ge, go, h, slope](auto i) NK_AI {
      const auto u = load_bf16_pair(xr + i);  // auto: dependent (not checked for float32/float64 X)
      if constexpr (AFF) {
        const int64_t q = i >> 1, N = Simd<T>::N;
        return Bf16Pair{ln_out<T, ACT, AFF>(u.even, p, ld(ge + q, N), ld(ge + 2 * h + q, N), slope),
                        ln_out<T, ACT, AFF>(u.odd, p, ld(go + q, N), ld(go + 2 * h + q, N), slope)};
      } else {
        return Bf16Pair{ln_out<T, ACT, AFF>(u.even, p, V<T>{}, V<T>{}, slope),
                        ln_out<T, ACT, AFF>(u.odd, p, V<T>{}, V<T>{}, slope)};
      }
    };
  };
  if (rows_streamable(y, ys, d, stream) && r0 < rows) {
    // Streamed rows of a contiguous y: row r is written in the loop that makes row r + 1's first
    // pass (stream_row, row_sums); every row's statistics are those of ln_rows_stats. (For
    // float32, centring row r + 1 in the same loop as well, with the sum of row r + 2, was
    // measured no faster.)
    alignas(64) X line[Storage<X>::N];
    int64_t pend = 0;
    RowSums sums = row_sums<X>(x + r0 * xs, d);
    for (int64_t r = r0; r < rows; ++r) {
      const X* xr = x + r * xs;
      const bool last = r + 1 == rows;
      LnRow<T> p;
      ln_rows_finish<X, 1>(xr, xs, d, &sums, inv_d, eps, mean + r, rstd + r, &p);
      X* yr = y + r * ys;
      if constexpr (kRowPairs<X>)  // pairs where yr + i is vector-aligned: i of yr's element parity
        sums = stream_row<X>(yr, d, last ? nullptr : xr + xs, last, line, pend, out_fn(xr, p),
                             pair_fn(xr, p, (reinterpret_cast<uintptr_t>(yr) / sizeof(X)) & 1));
      else
        sums = stream_row<X>(yr, d, last ? nullptr : xr + xs, last, line, pend, out_fn(xr, p));
    }
  } else {
    for (int64_t r = r0; r < rows; ++r) {
      const X* xr = x + r * xs;
      LnRow<T> p;
      ln_rows_stats<X, 1>(xr, xs, d, inv_d, eps, mean + r, rstd + r, &p);
      if constexpr (kRowPairs<X>) {
        if (!stream) {
          write_row_pairs(y + r * ys, d, out_fn(xr, p), pair_fn(xr, p, false));
          continue;
        }
      }
      write_row<X>(y + r * ys, d, stream, out_fn(xr, p));
    }
  }
  if (stream) stream_fence();
}

// Per row, with g = dout through the activation, wdy = g * gamma, xm = x - mean:
//   a = sum(wdy), b = sum(wdy * xm), c = sum(xm)/d (residual of the saved float mean)
//   xhat = (xm - c) * rstd, b' = b - c*a
//   dx = rstd * wdy - rstd * a/d - rstd^3 * b'/d * (xm - c)
//   dgamma += g * xhat, dbeta += g  (float per kNormSubRows rows, then double)
// Layer-norm backward of one row in the wide type (WideOf<T>), from the saved mean m and rstd rs:
// with xhat = (x - m - c) * rs, c = mean(x - m), dx = rs * (wdy - mean(wdy) - xhat * mean(wdy * xhat)),
// the factorisation that keeps every intermediate in range for any finite row (the fast one's
// rs^3 underflows for a large std). dgamma/dbeta partials (accg/accb, when given) as the fast loop.
template <class X, int ACT, class T = compute_t<X>>
__attribute__((noinline, cold)) void ln_bwd_row_wide(const X* dr, const X* xr, const X* yr, const T* gamma, T m,
                                                     T rs, X* dxr, T* accg, T* accb, int64_t d, T slope) {
  using W = WideOf<T>;
  auto grad = [&](int64_t i) -> T {
    const T di = load_one(dr + i);
    if constexpr (ACT == kNormActRelu) return load_one(yr + i) > T(0) ? di : T(0);
    else if constexpr (ACT == kNormActLeakyRelu) return load_one(yr + i) > T(0) ? di : di * slope;
    else return di;
  };
  W a = 0, b = 0, c = 0;
  for (int64_t i = 0; i < d; ++i) {
    const W wdy = W(grad(i)) * W(gamma[i]), xm = W(load_one(xr + i)) - W(m);
    a += wdy; b += wdy * xm; c += xm;
  }
  const W dd = W(d), rsw = W(rs);
  c /= dd;
  const W ma = a / dd, k = (b - c * a) * rsw / dd;  // mean(wdy), mean(wdy * xhat)
  for (int64_t i = 0; i < d; ++i) {
    const T g = grad(i);
    const W xhat = (W(load_one(xr + i)) - W(m) - c) * rsw;
    store_one(dxr + i, T(rsw * (W(g) * W(gamma[i]) - ma - xhat * k)));
    if (accg) {
      accg[i] += T(W(g) * xhat);
      accb[i] += g;
    }
  }
}

template <class X, int ACT, class T = compute_t<X>>
void ln_bwd_impl(const X* dout, int64_t ds, const X* x, int64_t xs, const X* y, int64_t yss, const T* gamma,
                 const T* mean, const T* rstd, X* dx, int64_t dxs, double* part, T* scratch, int64_t rows, int64_t d,
                 double slope_d, bool stream) {
  using S = Storage<X>;
  constexpr int N = S::N;
  const T slope = T(slope_d);
  T* accg = scratch;
  T* accb = scratch ? scratch + d : nullptr;
  if (part) {
    for (int64_t j = 0; j < 2 * d; ++j) part[j] = 0;
    for (int64_t j = 0; j < 2 * d; ++j) scratch[j] = 0;
  }
  // Per-row coefficients of dx = (g * gamma) * rs + (xm - c) * kx + bb (first pass over the row).
  // `wide`: the float sums overflowed (|x - mean| * |g| beyond max, or values spread over more
  // than max) or kx = -rs^3 * b' / d is outside T's normal range (std beyond ~1e19 in float32:
  // rs^2 underflows, and the xhat term of dx would be lost): the row goes to ln_bwd_row_wide.
  struct Coef { T m, rs, cl, kx, bb; bool wide; };
  auto coef = [&](int64_t r) NK_AI {
    const X* dr = dout + r * ds;
    const X* xr = x + r * xs;
    const X* yr = ACT ? y + r * yss : nullptr;
    const T m = mean[r];
    const T rs = rstd[r];
    double a = 0, b = 0, c = 0;
    for (int64_t b0 = 0; b0 < d; b0 += kRunBlock) {
      const int64_t bn = imin(kRunBlock, d - b0);
      // two accumulator sets over full vectors (independent add chains), then the tail
      V<T> va{}, vb{}, vc{}, va2{}, vb2{}, vc2{};
      const int64_t e = b0 + bn;
      int64_t i = b0;
      for (; i + 2 * N <= e; i += 2 * N) {
        const V<T> g0 = act_bwd<T, ACT>(S::load(dr + i), yr + i, N, slope);
        const V<T> g1 = act_bwd<T, ACT>(S::load(dr + i + N), yr + i + N, N, slope);
        const V<T> w0 = g0 * Simd<T>::load(gamma + i), w1 = g1 * Simd<T>::load(gamma + i + N);
        const V<T> x0 = S::load(xr + i) - m, x1 = S::load(xr + i + N) - m;
        va += w0; vb += w0 * x0; vc += x0;
        va2 += w1; vb2 += w1 * x1; vc2 += x1;
      }
      for (; i < e; i += N) {
        const int64_t k = imin(N, e - i);
        V<T> g = act_bwd<T, ACT>(ld(dr + i, k), yr + i, k, slope);
        V<T> wdy = g * ld(gamma + i, k);
        V<T> xm = keep_first<T>(ld(xr + i, k) - m, k);
        va += wdy; vb += wdy * xm; vc += xm;
      }
      a += double(hsum<T>(va + va2)); b += double(hsum<T>(vb + vb2)); c += double(hsum<T>(vc + vc2));
    }
    const double dd = double(d);
    c /= dd;
    const double bp = b - c * a;
    const double rsd = double(rs);
    const double kx = -rsd * rsd * rsd * bp / dd;
    const double akx = kx < 0 ? -kx : kx;
    constexpr double tmin = double(std::numeric_limits<T>::min()), tmax = double(std::numeric_limits<T>::max());
    const bool wide = !(std::fabs(a) + std::fabs(b) + std::fabs(c) <= std::numeric_limits<double>::max()) ||
                      (akx != 0 && (akx < tmin || akx > tmax));
    return Coef{m, rs, T(c), T(kx), T(-rsd * a / dd), wide};
  };
  // One row, each element written after its reads (dx may be dout): the fast loop, or
  // ln_bwd_row_wide for a `wide` row.
  auto one_row = [&](int64_t r) NK_AI {
    const Coef q = coef(r);
    const X* dr = dout + r * ds;
    const X* xr = x + r * xs;
    const X* yr = ACT ? y + r * yss : nullptr;
    if (__builtin_expect(q.wide, 0)) {
      ln_bwd_row_wide<X, ACT>(dr, xr, yr, gamma, q.m, q.rs, dx + r * dxs, accg, accb, d, slope);
      return;
    }
    write_row<X>(dx + r * dxs, d, stream, [&](int64_t i, int64_t k) NK_AI {
      V<T> g = act_bwd<T, ACT>(ld(dr + i, k), yr + i, k, slope);
      V<T> xmc = (ld(xr + i, k) - q.m) - q.cl;
      if (part) {
        st<T>(accg + i, ld(accg + i, k) + g * (xmc * q.rs), k);
        st<T>(accb + i, ld(accb + i, k) + g, k);
      }
      return fmadd(g * ld(gamma + i, k), splat(q.rs), fmadd(xmc, splat(q.kx), splat(q.bb)));
    });
  };
  auto flush = [&](int64_t done) {
    if (part && (done % kNormSubRows == 0 || done == rows)) {
      for (int64_t j = 0; j < 2 * d; ++j) {
        part[j] += double(scratch[j]);
        scratch[j] = 0;
      }
    }
  };
  int64_t r = 0;
  if (part) {
    // Four rows per write loop: dgamma/dbeta partials are loaded and stored once per four rows
    // (and gamma once), instead of once per row; measured ~30% of the backward at
    // (65536, 1024) float32. Groups never straddle a kNormSubRows flush (64 % 4 == 0).
    for (; r + 4 <= rows; r += 4) {
      const Coef q0 = coef(r), q1 = coef(r + 1), q2 = coef(r + 2), q3 = coef(r + 3);
      if (__builtin_expect(q0.wide || q1.wide || q2.wide || q3.wide, 0)) {  // rare: these four one by one
        for (int64_t k = 0; k < 4; ++k) one_row(r + k);
        flush(r + 4);
        continue;
      }
      const X *d0 = dout + r * ds, *d1 = d0 + ds, *d2 = d1 + ds, *d3 = d2 + ds;
      const X *x0 = x + r * xs, *x1 = x0 + xs, *x2 = x1 + xs, *x3 = x2 + xs;
      const X* y0 = ACT ? y + r * yss : nullptr;
      const X* y1 = ACT ? y0 + yss : nullptr;
      const X* y2 = ACT ? y1 + yss : nullptr;
      const X* y3 = ACT ? y2 + yss : nullptr;
      X *o0 = dx + r * dxs, *o1 = o0 + dxs, *o2 = o1 + dxs, *o3 = o2 + dxs;
      const bool nt = stream && (reinterpret_cast<uintptr_t>(o0) | reinterpret_cast<uintptr_t>(o1) |
                                 reinterpret_cast<uintptr_t>(o2) | reinterpret_cast<uintptr_t>(o3)) %
                                        uintptr_t(S::kBytes) == 0;
      auto put = [nt](X* p, V<T> v, int64_t k) NK_AI {
        if (nt && k == N) S::stream(p, v); else st<X>(p, v, k);
      };
      col_loop<X>(d, [&](int64_t i, int64_t k) NK_AI {
        const V<T> gm = ld(gamma + i, k);
        const V<T> g0 = act_bwd<T, ACT>(ld(d0 + i, k), y0 + i, k, slope);
        const V<T> g1 = act_bwd<T, ACT>(ld(d1 + i, k), y1 + i, k, slope);
        const V<T> g2 = act_bwd<T, ACT>(ld(d2 + i, k), y2 + i, k, slope);
        const V<T> g3 = act_bwd<T, ACT>(ld(d3 + i, k), y3 + i, k, slope);
        const V<T> e0 = (ld(x0 + i, k) - q0.m) - q0.cl, e1 = (ld(x1 + i, k) - q1.m) - q1.cl;
        const V<T> e2 = (ld(x2 + i, k) - q2.m) - q2.cl, e3 = (ld(x3 + i, k) - q3.m) - q3.cl;
        put(o0 + i, fmadd(g0 * gm, splat(q0.rs), fmadd(e0, splat(q0.kx), splat(q0.bb))), k);
        put(o1 + i, fmadd(g1 * gm, splat(q1.rs), fmadd(e1, splat(q1.kx), splat(q1.bb))), k);
        put(o2 + i, fmadd(g2 * gm, splat(q2.rs), fmadd(e2, splat(q2.kx), splat(q2.bb))), k);
        put(o3 + i, fmadd(g3 * gm, splat(q3.rs), fmadd(e3, splat(q3.kx), splat(q3.bb))), k);
        st<T>(accg + i, ld(accg + i, k) + ((g0 * (e0 * q0.rs) + g1 * (e1 * q1.rs)) + (g2 * (e2 * q2.rs) + g3 * (e3 * q3.rs))), k);
        st<T>(accb + i, ld(accb + i, k) + ((g0 + g1) + (g2 + g3)), k);
      });
      flush(r + 4);
    }
  }
  for (; r < rows; ++r) {
    one_row(r);
    flush(r + 1);
  }
  if (stream) stream_fence();
}

// ---------------------------------------------------------------- batch norm: statistics

// Block means are kept relative to a shift K (the first block's mean, a T value): mb - K is
// exact in double, so the merged mean keeps full precision when |mean| >> std.
// Rows are taken in groups of four so that each float accumulator is loaded and stored once
// per four rows of data (the accumulators of a 1024-column tile stay in L1).
template <class X, class T = compute_t<X>>
void col_stats(const X* x, int64_t xs, int64_t rows, int64_t w, double* shift, double* mean, double* m2) {
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
      const X* xb = x + r0 * xs + j0;
      // pass 1 (from memory): mb[j] = sum_r x[r][j] / rn
      for (int64_t j = 0; j < jn; ++j) mb[j] = 0;
      int64_t r = 0;
      for (; r + 4 <= rn; r += 4) {
        const X *x0 = xb + r * xs, *x1 = x0 + xs, *x2 = x1 + xs, *x3 = x2 + xs;
        col_loop<T>(jn, [&](int64_t j, int64_t k) NK_AI {
          st<T>(mb + j, ld(mb + j, k) + ((ld(x0 + j, k) + ld(x1 + j, k)) + (ld(x2 + j, k) + ld(x3 + j, k))), k);
        });
      }
      for (; r < rn; ++r) {
        const X* x0 = xb + r * xs;
        col_loop<T>(jn, [&](int64_t j, int64_t k) NK_AI { st<T>(mb + j, ld(mb + j, k) + ld(x0 + j, k), k); });
      }
      const T inv_rn = T(1) / T(rn);
      for (int64_t j = 0; j < jn; ++j) { mb[j] *= inv_rn; s1[j] = 0; s2[j] = 0; }
      if (r0 == 0)
        for (int64_t j = 0; j < jn; ++j) ko[j] = double(mb[j]);
      // pass 2 (block in cache): s1 = sum(x - mb), s2 = sum((x - mb)^2). Meanwhile the next
      // block's lines are prefetched into L2, one per 64 bytes of this block: DRAM keeps
      // streaming while this pass computes from cache (stats pass 11.6-12.3 -> 10.4-10.5 ms at
      // (65536, 1024) float32, paired calls in one process on the 2-core VM).
      const bool pf = r0 + 2 * kNormSubRows <= rows;
      for (r = 0; r + 4 <= rn; r += 4) {
        const X *x0 = xb + r * xs, *x1 = x0 + xs, *x2 = x1 + xs, *x3 = x2 + xs;
        const int64_t nx = kNormSubRows * xs;
        col_loop<T>(jn, [&](int64_t j, int64_t k) NK_AI {
          if (pf && (j * int64_t(sizeof(X))) % 64 == 0) {
            __builtin_prefetch(x0 + nx + j, 0, 2); __builtin_prefetch(x1 + nx + j, 0, 2);
            __builtin_prefetch(x2 + nx + j, 0, 2); __builtin_prefetch(x3 + nx + j, 0, 2);
          }
          const V<T> m = ld(mb + j, k);
          const V<T> d0 = ld(x0 + j, k) - m, d1 = ld(x1 + j, k) - m, d2 = ld(x2 + j, k) - m, d3 = ld(x3 + j, k) - m;
          st<T>(s1 + j, ld(s1 + j, k) + ((d0 + d1) + (d2 + d3)), k);
          st<T>(s2 + j, ld(s2 + j, k) + ((d0 * d0 + d1 * d1) + (d2 * d2 + d3 * d3)), k);
        });
      }
      for (; r < rn; ++r) {
        const X* x0 = xb + r * xs;
        col_loop<T>(jn, [&](int64_t j, int64_t k) NK_AI {
          const V<T> d0 = ld(x0 + j, k) - ld(mb + j, k);
          st<T>(s1 + j, ld(s1 + j, k) + d0, k);
          st<T>(s2 + j, ld(s2 + j, k) + d0 * d0, k);
        });
      }
      // merge the block into the running (count, mean - K, m2) of each column, in double
      // (Chan's update, core/chan.hpp, with the weights of this block's count computed once)
      const double nb = double(rn), inv = 1.0 / nb;
      const ChanWeights wt = chan_weights(cnt, nb);
      for (int64_t j = 0; j < jn; ++j) {
        const double a = double(s1[j]);
        const double bm = (double(mb[j]) - ko[j]) + a * inv;
        double bq = double(s2[j]) - a * a * inv;
        bq = bq < 0 ? 0 : bq;
        chan_apply(mo[j], qo[j], bm, bq, wt);
      }
      cnt = wt.n;
    }
  }
}

template <class X, class T = compute_t<X>>
void run_stats(const X* x, int64_t n, double* shift, double* mean, double* m2) {
  double cnt = 0, mu = 0, q = 0, kk = 0;
  for (int64_t b0 = 0; b0 < n; b0 += kRunBlock) {
    const int64_t bn = imin(kRunBlock, n - b0);
    const T mh = T(run_sum<X>(x + b0, bn) / double(bn));
    if (b0 == 0) kk = double(mh);
    double s1, s2;
    run_centered<X>(x + b0, bn, mh, s1, s2);
    double bq = s2 - s1 * s1 / double(bn);
    chan_merge(cnt, mu, q, double(bn), (double(mh) - kk) + s1 / double(bn), bq < 0 ? 0 : bq);
  }
  *shift = kk;
  *mean = mu;
  *m2 = q;
}

// ---------------------------------------------------------------- batch norm: normalise

// y = act((x - mh) * scale + shift), per-column params [mh, scale, shift], one row at a time
// (measured faster here than taking four rows per parameter load: rows 4 KiB apart alias in L1).
// The host folds the mean's low part ml into shift (shift = beta - ml * scale, in double): one
// parameter stream fewer per element (measured: normalise 16-22 -> 13 ms at (65536, 1024) f32)
// with the same accuracy, since x - mh is exact for x near the mean and ml * scale is small.
template <class X, int ACT, class T = compute_t<X>>
void col_apply_impl(const X* x, int64_t xs, X* y, int64_t ys, int64_t rows, int64_t w, const T* p, double slope_d,
                    bool stream) {
  const T slope = T(slope_d);
  const T *mh = p, *sc = p + w, *sh = p + 2 * w;
  auto f = [&](int64_t r, int64_t i, int64_t k) NK_AI {
    V<T> v = fmadd(ld(x + r * xs + i, k) - ld(mh + i, k), ld(sc + i, k), ld(sh + i, k));
    return act_fwd<T, ACT>(v, slope);
  };
  if constexpr (kRowPairs<X>) {
    // bfloat16 rows in pairs: each column parameter of the pair at i from the parity-split copies
    // (see ln_fwd_impl), mh at 0, scale at 2h, shift at 4h.
    const ParitySplit<T, true, 3> split({mh, sc, sh}, w);
    const int64_t h = (w + 1) / 2;
    write_rows<X>(y, ys, rows, w, stream, f, [&](int64_t r, bool odd) NK_AI {
      const T* pe = split.data() + (odd ? h : 0);  // parameters of the .even lanes, at i >> 1
      const T* po = split.data() + (odd ? 1 : h);  // of the .odd lanes
      const X* xr = x + r * xs;
      return [xr, pe, po, h, slope](auto i) NK_AI {
        const auto u = load_bf16_pair(xr + i);  // auto: dependent (not checked for float32/float64 X)
        const int64_t q = i >> 1, N = Simd<T>::N;
        const V<T> ve = fmadd(u.even - ld(pe + q, N), ld(pe + 2 * h + q, N), ld(pe + 4 * h + q, N));
        const V<T> vo = fmadd(u.odd - ld(po + q, N), ld(po + 2 * h + q, N), ld(po + 4 * h + q, N));
        return Bf16Pair{act_fwd<T, ACT>(ve, slope), act_fwd<T, ACT>(vo, slope)};
      };
    });
  } else {
    write_rows<X>(y, ys, rows, w, stream, f);
  }
  if (stream) stream_fence();
}

template <class X, int ACT, class T = compute_t<X>>
void run_apply_impl(const X* x, X* y, int64_t n, const T* p, double slope_d, bool stream) {
  const T slope = T(slope_d);
  const T mh = p[0], sc = p[1], sh = p[2];
  write_row<X>(y, n, stream, [&](int64_t i, int64_t k) NK_AI {
    return act_fwd<T, ACT>(fmadd(ld(x + i, k) - mh, splat(sc), splat(sh)), slope);
  });
  if (stream) stream_fence();
}

// ---------------------------------------------------------------- batch norm: backward

// Per column: sum g, sum g*(x - m), sum (x - m); float per kNormSubRows rows (four rows per
// accumulator load/store), double across.
template <class X, int ACT, class T = compute_t<X>>
void col_bwd_reduce_impl(const X* dout, int64_t ds, const X* x, int64_t xs, const X* y, int64_t yss, int64_t rows,
                         int64_t w, const T* m, double* out3, double slope_d) {
  const T slope = T(slope_d);
  alignas(64) T ag[kNormColTile];
  alignas(64) T agx[kNormColTile];
  alignas(64) T ax[kNormColTile];
  for (int64_t j = 0; j < 3 * w; ++j) out3[j] = 0;
  for (int64_t j0 = 0; j0 < w; j0 += kNormColTile) {
    const int64_t jn = imin(kNormColTile, w - j0);
    const T* mj = m + j0;
    for (int64_t r0 = 0; r0 < rows; r0 += kNormSubRows) {
      const int64_t rn = imin(kNormSubRows, rows - r0);
      for (int64_t j = 0; j < jn; ++j) { ag[j] = 0; agx[j] = 0; ax[j] = 0; }
      int64_t r = r0;
      for (; r + 4 <= r0 + rn; r += 4) {
        const X *d0 = dout + r * ds + j0, *d1 = d0 + ds, *d2 = d1 + ds, *d3 = d2 + ds;
        const X *x0 = x + r * xs + j0, *x1 = x0 + xs, *x2 = x1 + xs, *x3 = x2 + xs;
        const X* y0 = ACT ? y + r * yss + j0 : nullptr;
        const X* y1 = ACT ? y0 + yss : nullptr;
        const X* y2 = ACT ? y1 + yss : nullptr;
        const X* y3 = ACT ? y2 + yss : nullptr;
        col_loop<T>(jn, [&](int64_t j, int64_t k) NK_AI {
          const V<T> mm = ld(mj + j, k);
          const V<T> g0 = act_bwd<T, ACT>(ld(d0 + j, k), y0 + j, k, slope);
          const V<T> g1 = act_bwd<T, ACT>(ld(d1 + j, k), y1 + j, k, slope);
          const V<T> g2 = act_bwd<T, ACT>(ld(d2 + j, k), y2 + j, k, slope);
          const V<T> g3 = act_bwd<T, ACT>(ld(d3 + j, k), y3 + j, k, slope);
          const V<T> e0 = ld(x0 + j, k) - mm, e1 = ld(x1 + j, k) - mm, e2 = ld(x2 + j, k) - mm, e3 = ld(x3 + j, k) - mm;
          st<T>(ag + j, ld(ag + j, k) + ((g0 + g1) + (g2 + g3)), k);
          st<T>(agx + j, ld(agx + j, k) + ((g0 * e0 + g1 * e1) + (g2 * e2 + g3 * e3)), k);
          st<T>(ax + j, ld(ax + j, k) + ((e0 + e1) + (e2 + e3)), k);
        });
      }
      for (; r < r0 + rn; ++r) {
        const X* dr = dout + r * ds + j0;
        const X* xr = x + r * xs + j0;
        const X* yr = ACT ? y + r * yss + j0 : nullptr;
        col_loop<T>(jn, [&](int64_t j, int64_t k) NK_AI {
          const V<T> g = act_bwd<T, ACT>(ld(dr + j, k), yr + j, k, slope);
          const V<T> xm = ld(xr + j, k) - ld(mj + j, k);
          st<T>(ag + j, ld(ag + j, k) + g, k);
          st<T>(agx + j, ld(agx + j, k) + g * xm, k);
          st<T>(ax + j, ld(ax + j, k) + xm, k);
        });
      }
      for (int64_t j = 0; j < jn; ++j) {
        out3[j0 + j] += double(ag[j]);
        out3[w + j0 + j] += double(agx[j]);
        out3[2 * w + j0 + j] += double(ax[j]);
      }
    }
  }
}

template <class X, int ACT, class T = compute_t<X>>
void run_bwd_reduce_impl(const X* dout, const X* x, const X* y, int64_t n, T m, double* out3, double slope_d) {
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

// dx = A*g + K*(x - mh) + B, per-column params [mh, A, K, B] (ml folded into B by the host),
// one row at a time (see col_apply_impl)
template <class X, int ACT, class T = compute_t<X>>
void col_bwd_apply_impl(const X* dout, int64_t ds, const X* x, int64_t xs, const X* y, int64_t yss, X* dx,
                        int64_t dxs, int64_t rows, int64_t w, const T* p, double slope_d, bool stream) {
  const T slope = T(slope_d);
  const T *mh = p, *pa = p + w, *pk = p + 2 * w, *pb = p + 3 * w;
  write_rows<X>(dx, dxs, rows, w, stream, [&](int64_t r, int64_t i, int64_t k) NK_AI {
    V<T> g = act_bwd<T, ACT>(ld(dout + r * ds + i, k), ACT ? y + r * yss + i : nullptr, k, slope);
    return fmadd(g, ld(pa + i, k), fmadd(ld(x + r * xs + i, k) - ld(mh + i, k), ld(pk + i, k), ld(pb + i, k)));
  });
  if (stream) stream_fence();
}

template <class X, int ACT, class T = compute_t<X>>
void run_bwd_apply_impl(const X* dout, const X* x, const X* y, X* dx, int64_t n, const T* p, double slope_d,
                        bool stream) {
  const T slope = T(slope_d);
  const T mh = p[0], pa = p[1], pk = p[2], pb = p[3];
  write_row<X>(dx, n, stream, [&](int64_t i, int64_t k) NK_AI {
    V<T> g = act_bwd<T, ACT>(ld(dout + i, k), ACT ? y + i : nullptr, k, slope);
    return fmadd(g, splat(pa), fmadd(ld(x + i, k) - mh, splat(pk), splat(pb)));
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

template <class T, int ACT>
void ln_fwd_impl2(const T* x, int64_t xs, T* y, int64_t ys, const compute_t<T>* gamma, const compute_t<T>* beta,
                  compute_t<T>* mean, compute_t<T>* rstd, int64_t rows, int64_t d, double eps, double slope,
                  bool stream) {
  if (gamma) ln_fwd_impl<T, ACT, true>(x, xs, y, ys, gamma, beta, mean, rstd, rows, d, eps, slope, stream);
  else ln_fwd_impl<T, ACT, false>(x, xs, y, ys, gamma, beta, mean, rstd, rows, d, eps, slope, stream);
}
template <class T>
void ln_fwd(const T* x, int64_t xs, T* y, int64_t ys, const compute_t<T>* gamma, const compute_t<T>* beta,
            compute_t<T>* mean, compute_t<T>* rstd, int64_t rows, int64_t d, double eps, int act, double slope,
            bool stream) {
  NK_NORM_DISPATCH(ln_fwd_impl2, x, xs, y, ys, gamma, beta, mean, rstd, rows, d, eps, slope, stream)
}
template <class T>
void ln_bwd(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, const compute_t<T>* gamma,
            const compute_t<T>* mean, const compute_t<T>* rstd, T* dx, int64_t dxs, double* part,
            compute_t<T>* scratch, int64_t rows, int64_t d, int act, double slope, bool stream) {
  NK_NORM_DISPATCH(ln_bwd_impl, dout, ds, x, xs, y, yss, gamma, mean, rstd, dx, dxs, part, scratch, rows, d, slope,
                   stream)
}
template <class T>
void col_apply(const T* x, int64_t xs, T* y, int64_t ys, int64_t rows, int64_t w, const compute_t<T>* p, int act, double slope,
               bool stream) {
  NK_NORM_DISPATCH(col_apply_impl, x, xs, y, ys, rows, w, p, slope, stream)
}
template <class T>
void run_apply(const T* x, T* y, int64_t n, const compute_t<T>* p, int act, double slope, bool stream) {
  NK_NORM_DISPATCH(run_apply_impl, x, y, n, p, slope, stream)
}
template <class T>
void col_bwd_reduce(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, int64_t rows,
                    int64_t w, const compute_t<T>* m, double* out3, int act, double slope) {
  NK_NORM_DISPATCH(col_bwd_reduce_impl, dout, ds, x, xs, y, yss, rows, w, m, out3, slope)
}
template <class T>
void run_bwd_reduce(const T* dout, const T* x, const T* y, int64_t n, compute_t<T> m, double* out3, int act, double slope) {
  NK_NORM_DISPATCH(run_bwd_reduce_impl, dout, x, y, n, m, out3, slope)
}
template <class T>
void col_bwd_apply(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, T* dx, int64_t dxs,
                   int64_t rows, int64_t w, const compute_t<T>* p, int act, double slope, bool stream) {
  NK_NORM_DISPATCH(col_bwd_apply_impl, dout, ds, x, xs, y, yss, dx, dxs, rows, w, p, slope, stream)
}
template <class T>
void run_bwd_apply(const T* dout, const T* x, const T* y, T* dx, int64_t n, const compute_t<T>* p, int act, double slope,
                   bool stream) {
  NK_NORM_DISPATCH(run_bwd_apply_impl, dout, x, y, dx, n, p, slope, stream)
}
#undef NK_NORM_DISPATCH

bool any_outside(const double* v, int64_t n, double lo) { return any_outside_scalar(v, n, lo); }

template <class T> constexpr NormKernelsT<T> make_table() {
  return NormKernelsT<T>{&ln_fwd<T>,    &ln_bwd<T>,         &col_stats<T>,      &run_stats<T>,
                         &col_apply<T>, &run_apply<T>,      &col_bwd_reduce<T>, &run_bwd_reduce<T>,
                         &col_bwd_apply<T>, &run_bwd_apply<T>, &any_outside};
}


}  // namespace
NK_KERNEL_NAMESPACE_END
#undef NK_AI

NK_DEFINE_ISA_TABLE(NormalizationKernels, normalization_kernels) = {
    nk::NK_ISA_NS::make_table<float>(),
    nk::NK_ISA_NS::make_table<double>(),
    nk::NK_ISA_NS::make_table<nk::float16_t>(),
    nk::NK_ISA_NS::make_table<nk::bfloat16_t>(),
};
