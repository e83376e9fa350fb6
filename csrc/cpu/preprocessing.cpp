// Data-preprocessing kernels on a block of rows of a 2-D float32/float64 matrix:
// column statistics (two-pass mean / sum of squared deviations, min/max, finiteness), fused
// per-column affine transforms y = (x - a) * s + c, row normalisation (l2/l1/max), a
// transposing column gather and per-column percentiles by quickselect (no sort).
// C order (cs == 1): rows outer, columns inner (vectorised across columns, each column's
// accumulation order stays sequential). F order (rs == 1): columns outer, rows inner, with
// 16 fixed accumulators combined pairwise, so the rounding never depends on the vector width.
// Statistics accumulate in float64 for both dtypes. Blocks are merged by the host
// (csrc/bindings/preprocessing.cpp, Chan et al.'s pairwise update) in block order.
// Reference: nnkernels.reference.preprocessing; CUDA twin: csrc/cuda/preprocessing.cu.
// Test: pytest tests/test_preprocessing.py; bench: python -m nnkernels bench --ops preprocessing
#include "cpu/preprocessing.hpp"

#include <cstring>
#include <type_traits>

#include "core/simd.hpp"

NK_KERNEL_NAMESPACE_BEGIN
namespace {

constexpr int kAcc = 16;

// Copy n elements to dst with non-temporal stores (head peeled to the vector alignment).
template <class T>
inline void stream_out(T* dst, const T* src, int64_t n) {
  using S = Simd<T>;
  const int64_t mis = int64_t(reinterpret_cast<uintptr_t>(dst) % kVecBytes);
  if (mis % int64_t(sizeof(T)) != 0) {
    std::memcpy(dst, src, size_t(n) * sizeof(T));
    return;
  }
  int64_t i = 0;
  if (mis) {
    i = (kVecBytes - mis) / int64_t(sizeof(T));
    if (i > n) i = n;
    std::memcpy(dst, src, size_t(i) * sizeof(T));
  }
  for (; i + S::N <= n; i += S::N) S::stream(dst + i, S::load(src + i));
  if (i < n) std::memcpy(dst + i, src + i, size_t(n - i) * sizeof(T));
}

constexpr int64_t kTile = 8192;

// Apply row_op(r, o) to each row of a C-order block. With `stream` and contiguous output rows,
// rows are produced into an L1-resident tile and written out with non-temporal stores (no
// read-for-ownership of the destination lines).
template <class T, class RowOp>
inline void for_rows(const PrepBlock& b, T* y, int64_t yrs, int64_t ycs, bool stream, RowOp row_op) {
  const T* x = static_cast<const T*>(b.x);
  const int64_t R = b.rows, C = b.cols;
  if (stream && ycs == 1 && yrs == C && C <= kTile) {
    alignas(64) T tile[kTile];
    const int64_t per = kTile / C;
    for (int64_t i0 = 0; i0 < R; i0 += per) {
      const int64_t i1 = i0 + per < R ? i0 + per : R;
      for (int64_t i = i0; i < i1; ++i) row_op(x + i * b.rs, tile + (i - i0) * C, int64_t(1));
      stream_out(y + i0 * yrs, tile, (i1 - i0) * C);
    }
    stream_fence();
    return;
  }
  for (int64_t i = 0; i < R; ++i) row_op(x + i * b.rs, y + i * yrs, ycs);
}

inline void combine16(double* acc) {
  for (int w = kAcc / 2; w >= 1; w /= 2)
    for (int k = 0; k < w; ++k) acc[k] += acc[k + w];
}

// sum_i f(p[i]) over a contiguous run, 16 accumulators (ISA-independent order)
template <class T, class F>
inline double sum16(const T* __restrict__ p, int64_t n, F f) {
  double acc[kAcc] = {};
  int64_t i = 0;
  for (; i + kAcc <= n; i += kAcc)
    for (int k = 0; k < kAcc; ++k) acc[k] += f(double(p[i + k]));
  for (int k = 0; i + k < n; ++k) acc[k] += f(double(p[i + k]));
  combine16(acc);
  return acc[0];
}

// Weighted, NaN-skipping moments (scikit-learn's scalers ignore NaN in fit). Same corrected
// two-pass scheme as below with weights w_i (1 when w is null) on the non-NaN values: pass 1
// cnt = sum w, mean = sum w x / cnt; pass 2 d = x - mean, m2 = sum w d^2 - (sum w d)^2 / cnt
// (weighted form of Chan, Golub & LeVeque 1983; West 1979 for the weighted update). The masks
// are selects, not branches, so the C-order loops vectorise across columns like the plain ones.
// W: weighted (w non-null). Unweighted blocks without NaN (every count equals the row count)
// take the plain second pass.
template <class T, bool W>
void col_moments_masked(const PrepBlock& b, const double* __restrict__ w, double* __restrict__ cnt,
                        double* __restrict__ mean, double* __restrict__ m2, double* __restrict__ scratch,
                        bool want_m2) {
  const T* x = static_cast<const T*>(b.x);
  const int64_t R = b.rows, C = b.cols, rs = b.rs, cs = b.cs;
  if (cs == 1) {
    for (int64_t j = 0; j < C; ++j) cnt[j] = mean[j] = 0.0;
    for (int64_t i = 0; i < R; ++i) {
      const T* __restrict__ r = x + i * rs;
      const double wi = W ? w[i] : 1.0;
      for (int64_t j = 0; j < C; ++j) {
        const double v = double(r[j]);
        const bool ok = v == v;
        cnt[j] += ok ? wi : 0.0;
        mean[j] += ok ? (W ? wi * v : v) : 0.0;
      }
    }
    bool full = !W;
    for (int64_t j = 0; j < C; ++j) {
      full = full && cnt[j] == double(R);
      mean[j] = cnt[j] > 0.0 ? mean[j] / cnt[j] : 0.0;
    }
    if (!want_m2) return;
    for (int64_t j = 0; j < C; ++j) scratch[j] = m2[j] = 0.0;
    if (full) {
      for (int64_t i = 0; i < R; ++i) {
        const T* __restrict__ r = x + i * rs;
        for (int64_t j = 0; j < C; ++j) {
          const double d = double(r[j]) - mean[j];
          scratch[j] += d;
          m2[j] += d * d;
        }
      }
    } else {
      for (int64_t i = 0; i < R; ++i) {
        const T* __restrict__ r = x + i * rs;
        const double wi = W ? w[i] : 1.0;
        for (int64_t j = 0; j < C; ++j) {
          const double v = double(r[j]);
          const double d = v == v ? v - mean[j] : 0.0;
          const double wd = W ? wi * d : d;
          scratch[j] += wd;
          m2[j] += wd * d;
        }
      }
    }
    for (int64_t j = 0; j < C; ++j) {
      if (!(cnt[j] > 0.0)) { m2[j] = 0.0; continue; }
      const double v = m2[j] - scratch[j] * scratch[j] / cnt[j];
      m2[j] = v > 0.0 ? v : 0.0;
      mean[j] += scratch[j] / cnt[j];
    }
    return;
  }
  for (int64_t j = 0; j < C; ++j) {
    const T* __restrict__ col = x + j * cs;
    double sw[kAcc] = {}, sx[kAcc] = {};
    int64_t i = 0;
    auto acc1 = [&](int k, int64_t ii) {
      const double v = double(col[ii]), wi = W ? w[ii] : 1.0;
      const bool ok = v == v;
      sw[k] += ok ? wi : 0.0;
      sx[k] += ok ? (W ? wi * v : v) : 0.0;
    };
    for (; i + kAcc <= R; i += kAcc)
      for (int k = 0; k < kAcc; ++k) acc1(k, i + k);
    for (int k = 0; i + k < R; ++k) acc1(k, i + k);
    combine16(sw);
    combine16(sx);
    cnt[j] = sw[0];
    const double mu = sw[0] > 0.0 ? sx[0] / sw[0] : 0.0;
    mean[j] = mu;
    if (!want_m2) continue;
    double s1[kAcc] = {}, s2[kAcc] = {};
    auto acc2 = [&](int k, int64_t ii) {
      const double v = double(col[ii]), wi = W ? w[ii] : 1.0;
      const double d = v == v ? v - mu : 0.0;
      const double wd = W ? wi * d : d;
      s1[k] += wd;
      s2[k] += wd * d;
    };
    i = 0;
    for (; i + kAcc <= R; i += kAcc)
      for (int k = 0; k < kAcc; ++k) acc2(k, i + k);
    for (int k = 0; i + k < R; ++k) acc2(k, i + k);
    combine16(s1);
    combine16(s2);
    if (!(sw[0] > 0.0)) { m2[j] = 0.0; continue; }
    const double v = s2[0] - s1[0] * s1[0] / sw[0];
    m2[j] = v > 0.0 ? v : 0.0;
    mean[j] = mu + s1[0] / sw[0];
  }
}

template <class T>
void col_stats(const PrepBlock& b, int flags, const double* __restrict__ w, double* __restrict__ cnt,
               double* __restrict__ mean, double* __restrict__ m2, double* __restrict__ mn,
               double* __restrict__ mx, double* __restrict__ bad, double* __restrict__ scratch) {
  const T* x = static_cast<const T*>(b.x);
  const int64_t R = b.rows, C = b.cols, rs = b.rs, cs = b.cs;
  const double inv_r = 1.0 / double(R);
  if ((flags & (kPrepMean | kPrepMoments)) && ((flags & kPrepIgnoreNan) || w)) {
    if (w)
      col_moments_masked<T, true>(b, w, cnt, mean, m2, scratch, (flags & kPrepMoments) != 0);
    else
      col_moments_masked<T, false>(b, w, cnt, mean, m2, scratch, (flags & kPrepMoments) != 0);
  } else if (flags & (kPrepMean | kPrepMoments)) {
    if (cs == 1) {
      // pass 1: mean[j] = sum_i x[i, j] / R ; pass 2: d = x - mean, m2 = sum d^2 - (sum d)^2 / R,
      // mean += sum d / R (corrected two-pass algorithm, Chan, Golub & LeVeque 1983)
      for (int64_t j = 0; j < C; ++j) mean[j] = 0.0;
      for (int64_t i = 0; i < R; ++i) {
        const T* __restrict__ r = x + i * rs;
        for (int64_t j = 0; j < C; ++j) mean[j] += double(r[j]);
      }
      for (int64_t j = 0; j < C; ++j) mean[j] *= inv_r;
      if (flags & kPrepMoments) {
        for (int64_t j = 0; j < C; ++j) scratch[j] = m2[j] = 0.0;
        for (int64_t i = 0; i < R; ++i) {
          const T* __restrict__ r = x + i * rs;
          for (int64_t j = 0; j < C; ++j) {
            const double d = double(r[j]) - mean[j];
            scratch[j] += d;
            m2[j] += d * d;
          }
        }
        // corrected two-pass: the deviations' sum refines the mean and the sum of squares
        for (int64_t j = 0; j < C; ++j) {
          const double v = m2[j] - scratch[j] * scratch[j] * inv_r;
          m2[j] = v > 0.0 ? v : 0.0;
          mean[j] += scratch[j] * inv_r;
        }
      }
    } else {
      for (int64_t j = 0; j < C; ++j) {
        const T* col = x + j * cs;
        const double mu = sum16(col, R, [](double v) { return v; }) * inv_r;
        mean[j] = mu;
        if (flags & kPrepMoments) {
          double s1[kAcc] = {}, s2[kAcc] = {};
          int64_t i = 0;
          for (; i + kAcc <= R; i += kAcc)
            for (int k = 0; k < kAcc; ++k) {
              const double d = double(col[i + k]) - mu;
              s1[k] += d;
              s2[k] += d * d;
            }
          for (int k = 0; i + k < R; ++k) {
            const double d = double(col[i + k]) - mu;
            s1[k] += d;
            s2[k] += d * d;
          }
          combine16(s1);
          combine16(s2);
          const double v = s2[0] - s1[0] * s1[0] * inv_r;
          m2[j] = v > 0.0 ? v : 0.0;
          mean[j] = mu + s1[0] * inv_r;
        }
      }
    }
  }
  if (flags & kPrepMinMax) {
    constexpr T kInf = T(__builtin_inf());
    if (cs == 1 && C >= Simd<T>::N) {
      // min/max exact in the data type, NaN skipped (the running values start at +-inf and a
      // comparison with NaN is false); bad[j] = sum (x - x): 0 for finite data, NaN otherwise.
      // Register blocks of up to 4 vectors of columns walk all rows of the block; a last partial
      // vector overlaps the previous one and recomputes those columns identically.
      using S = Simd<T>;
      using V = typename S::V;
      constexpr int N = S::N;
      auto block = [&](int64_t j0, auto nvec) {
        constexpr int U = decltype(nvec)::value;
        V lo[U], hi[U], bd[U];
        for (int u = 0; u < U; ++u) { lo[u] = S::splat(kInf); hi[u] = S::splat(-kInf); bd[u] = V{}; }
        for (int64_t i = 0; i < R; ++i) {
          const T* __restrict__ r = x + i * rs + j0;
          for (int u = 0; u < U; ++u) {
            const V v = S::load(r + u * N);
            lo[u] = v < lo[u] ? v : lo[u];
            hi[u] = v > hi[u] ? v : hi[u];
            bd[u] += v - v;
          }
        }
        for (int u = 0; u < U; ++u)
          for (int k = 0; k < N; ++k) {
            const int64_t j = j0 + u * N + k;
            mn[j] = double(lo[u][k]);
            mx[j] = double(hi[u][k]);
            bad[j] = double(bd[u][k]);
          }
      };
      int64_t j0 = 0;
      for (; j0 + 4 * N <= C; j0 += 4 * N) block(j0, std::integral_constant<int, 4>{});
      for (; j0 + N <= C; j0 += N) block(j0, std::integral_constant<int, 1>{});
      if (j0 < C) block(C - N, std::integral_constant<int, 1>{});
    } else if (cs == 1) {
      for (int64_t j = 0; j < C; ++j) {
        mn[j] = double(kInf);
        mx[j] = -double(kInf);
        bad[j] = 0.0;
      }
      for (int64_t i = 0; i < R; ++i) {
        const T* __restrict__ r = x + i * rs;
        for (int64_t j = 0; j < C; ++j) {
          const double v = double(r[j]);
          mn[j] = v < mn[j] ? v : mn[j];
          mx[j] = v > mx[j] ? v : mx[j];
          bad[j] += double(r[j] - r[j]);
        }
      }
    } else {
      for (int64_t j = 0; j < C; ++j) {
        const T* __restrict__ col = x + j * cs;
        T lo[kAcc], hi[kAcc];
        double bd[kAcc] = {};
        for (int k = 0; k < kAcc; ++k) { lo[k] = kInf; hi[k] = -kInf; }
        int64_t i = 0;
        for (; i + kAcc <= R; i += kAcc)
          for (int k = 0; k < kAcc; ++k) {
            const T v = col[i + k];
            lo[k] = v < lo[k] ? v : lo[k];
            hi[k] = v > hi[k] ? v : hi[k];
            bd[k] += double(v - v);
          }
        for (int k = 0; i + k < R; ++k) {
          const T v = col[i + k];
          lo[k] = v < lo[k] ? v : lo[k];
          hi[k] = v > hi[k] ? v : hi[k];
          bd[k] += double(v - v);
        }
        T l = lo[0], h = hi[0];
        for (int k = 1; k < kAcc; ++k) {
          l = lo[k] < l ? lo[k] : l;
          h = hi[k] > h ? hi[k] : h;
        }
        combine16(bd);
        mn[j] = double(l);
        mx[j] = double(h);
        bad[j] = bd[0];
      }
    }
  }
}

// y = (x - a[j]) * s[j] + c[j] in float64, rounded to T
template <class T>
void affine(const PrepBlock& b, void* yv, int64_t yrs, int64_t ycs, const double* __restrict__ a,
            const double* __restrict__ s, const double* __restrict__ c, bool stream) {
  const T* x = static_cast<const T*>(b.x);
  T* y = static_cast<T*>(yv);
  const int64_t R = b.rows, C = b.cols;
  if (b.cs == 1) {
    for_rows<T>(b, y, yrs, ycs, stream, [&](const T* __restrict__ r, T* __restrict__ o, int64_t oc) {
      if (oc == 1) {
        if (c)
          for (int64_t j = 0; j < C; ++j) o[j] = T((double(r[j]) - a[j]) * s[j] + c[j]);
        else
          for (int64_t j = 0; j < C; ++j) o[j] = T((double(r[j]) - a[j]) * s[j]);
      } else {
        for (int64_t j = 0; j < C; ++j) o[j * oc] = T((double(r[j]) - a[j]) * s[j] + (c ? c[j] : 0.0));
      }
    });
  } else if (b.rs == 1 && yrs == 1) {
    for (int64_t j = 0; j < C; ++j) {
      const T* __restrict__ col = x + j * b.cs;
      T* __restrict__ o = y + j * ycs;
      const double aj = a[j], sj = s[j], cj = c ? c[j] : 0.0;
      if (c)
        for (int64_t i = 0; i < R; ++i) o[i] = T((double(col[i]) - aj) * sj + cj);
      else
        for (int64_t i = 0; i < R; ++i) o[i] = T((double(col[i]) - aj) * sj);
    }
  } else {
    for (int64_t i = 0; i < R; ++i)
      for (int64_t j = 0; j < C; ++j) {
        const double v = (double(x[i * b.rs + j * b.cs]) - a[j]) * s[j];
        y[i * yrs + j * ycs] = T(c ? v + c[j] : v);
      }
  }
}

inline double absd(double v) { return v < 0.0 ? -v : v; }

// Row norms of a contiguous row. Lane k of 32 float64 accumulators takes elements k, k+32, ...
// and the lanes are combined by pairwise halving (as combine16), so the summation order is the same
// on every instruction set: the 32 lanes live in kRowLanes / N native registers (4 zmm, 8 ymm or
// 16 xmm; 32 lanes give four independent FMA chains on AVX-512), and masked tails add nothing.
constexpr int kRowLanes = 32;
template <class T>
struct RowAcc {
  using D = Simd<double>;
  static constexpr int N = D::N, M = kRowLanes / D::N;
  typedef T Half __attribute__((vector_size(N * sizeof(T))));

  static inline typename D::V widen(const T* p) {
#if defined(__AVX512F__)
    if constexpr (sizeof(T) == 4) {  // GCC splits the generic conversion into 256-bit halves
      const __m512d d = _mm512_maskz_cvtps_pd(0xFF, _mm256_loadu_ps(reinterpret_cast<const float*>(p)));
      typename D::V v;
      std::memcpy(&v, &d, sizeof(v));
      return v;
    }
#endif
    Half h;
    std::memcpy(&h, p, sizeof(h));
    return __builtin_convertvector(h, typename D::V);
  }
  // combine16 on registers: the steps of width >= N are whole-register adds, the rest scalar
  static inline double reduce(typename D::V* v) {
    for (int w = M / 2; w >= 1; w /= 2)
      for (int k = 0; k < w; ++k) v[k] += v[k + w];
    double acc[N];
    std::memcpy(acc, &v[0], sizeof(acc));
    for (int w = N / 2; w >= 1; w /= 2)
      for (int k = 0; k < w; ++k) acc[k] += acc[k + w];
    return acc[0];
  }
};

template <class T>
inline double row_norm_contig(const T* __restrict__ r, int64_t C, int norm) {
  using A = RowAcc<T>;
  using V = typename Simd<double>::V;
  constexpr int N = A::N, M = A::M;
  V acc[M], nan[M];  // nan: sum of (v - v); NaN/inf in the row must not vanish in the max
  for (int m = 0; m < M; ++m) acc[m] = nan[m] = V{};
  alignas(64) T tail[kRowLanes];
  int64_t j = 0;
  const int64_t body = C - C % kRowLanes;
  if (norm == kNormL2) {
    for (; j < body; j += kRowLanes)
      for (int m = 0; m < M; ++m) { const V v = A::widen(r + j + m * N); acc[m] += v * v; }
  } else if (norm == kNormL1) {
    for (; j < body; j += kRowLanes)
      for (int m = 0; m < M; ++m) { const V v = A::widen(r + j + m * N); acc[m] += v < 0.0 ? -v : v; }
  } else {
    for (; j < body; j += kRowLanes)
      for (int m = 0; m < M; ++m) {
        const V v = A::widen(r + j + m * N), a = v < 0.0 ? -v : v;
        acc[m] = a > acc[m] ? a : acc[m];
        nan[m] += v - v;
      }
  }
  if (j < C) {
    // tail: rows of >= 16 elements reload their last 16 and drop the lanes already summed
    // (lane l holds element C - 16 + l); shorter rows go through a zero-padded copy
    const T* src = r + C - kRowLanes;
    int64_t skip = kRowLanes - (C - j);
    if (C < kRowLanes) {
      std::memset(tail, 0, sizeof(tail));
      std::memcpy(tail, r, size_t(C) * sizeof(T));
      src = tail;
      skip = 0;
    }
    for (int m = 0; m < M; ++m) {
      V lane;
      for (int k = 0; k < N; ++k) lane[k] = double(m * N + k);
      const V v0 = A::widen(src + m * N), v = lane >= double(skip) ? v0 : V{}, a = v < 0.0 ? -v : v;
      if (norm == kNormL2) acc[m] += v * v;
      else if (norm == kNormL1) acc[m] += a;
      else { acc[m] = a > acc[m] ? a : acc[m]; nan[m] += v - v; }
    }
  }
  if (norm == kNormL2) return __builtin_sqrt(A::reduce(acc));
  if (norm == kNormL1) return A::reduce(acc);
  double mx[kRowLanes];
  std::memcpy(mx, acc, sizeof(mx));
  double best = mx[0];
  for (int k = 1; k < kRowLanes; ++k) best = mx[k] > best ? mx[k] : best;
  return best + A::reduce(nan);
}

template <class T>
void normalize(const PrepBlock& b, void* yv, int64_t yrs, int64_t ycs, int norm, double* __restrict__ norms,
               double* __restrict__ scratch, bool stream) {
  const T* x = static_cast<const T*>(b.x);
  T* y = static_cast<T*>(yv);
  const int64_t R = b.rows, C = b.cols;
  if (b.cs == 1) {
    // row norm in float64 (32 fixed lanes); the row is scaled by the reciprocal in T
    int64_t i = 0;
    const int64_t Cv = C;  // by value: the stores to o must not force a reload of the count
    const int nm = norm;
    for_rows<T>(b, y, yrs, ycs, stream, [&i, norms, Cv, nm](const T* __restrict__ r, T* __restrict__ o, int64_t oc) {
      const int64_t C = Cv;
      const double nv = row_norm_contig(r, C, nm);
      norms[i++] = nv;
      const T inv = T(1.0 / (nv == 0.0 ? 1.0 : nv));
      if (oc == 1 && C >= Simd<T>::N) {
        // whole vectors, then one overlapping last vector (rewrites equal values)
        using S = Simd<T>;
        const typename S::V vi = S::splat(inv);
        int64_t j = 0;
        for (; j + S::N <= C; j += S::N) S::store(o + j, S::load(r + j) * vi);
        if (j < C) S::store(o + C - S::N, S::load(r + C - S::N) * vi);
      } else if (oc == 1)
        for (int64_t j = 0; j < C; ++j) o[j] = r[j] * inv;
      else
        for (int64_t j = 0; j < C; ++j) o[j * oc] = r[j] * inv;
    });
    return;
  }
  // F order: accumulate the row norms column by column (sequential over columns per row)
  for (int64_t i = 0; i < R; ++i) scratch[i] = 0.0;
  double* __restrict__ acc = scratch;
  for (int64_t j = 0; j < C; ++j) {
    const T* __restrict__ col = x + j * b.cs;
    if (norm == kNormL2)
      for (int64_t i = 0; i < R; ++i) acc[i] += double(col[i]) * double(col[i]);
    else if (norm == kNormL1)
      for (int64_t i = 0; i < R; ++i) acc[i] += absd(double(col[i]));
    else
      for (int64_t i = 0; i < R; ++i) {
        const double v = absd(double(col[i]));
        acc[i] = v > acc[i] ? v : acc[i];
      }
  }
  if (norm == kNormMax) {  // propagate NaN/inf like the other norms
    for (int64_t j = 0; j < C; ++j) {
      const T* __restrict__ col = x + j * b.cs;
      for (int64_t i = 0; i < R; ++i) acc[i] += double(col[i] - col[i]);
    }
  }
  for (int64_t i = 0; i < R; ++i) {
    const double nv = norm == kNormL2 ? __builtin_sqrt(acc[i]) : acc[i];
    norms[i] = nv;
    acc[i] = 1.0 / (nv == 0.0 ? 1.0 : nv);
  }
  for (int64_t j = 0; j < C; ++j) {
    const T* __restrict__ col = x + j * b.cs;
    if (yrs == 1) {
      T* __restrict__ o = y + j * ycs;
      for (int64_t i = 0; i < R; ++i) o[i] = T(double(col[i]) * acc[i]);
    } else {
      for (int64_t i = 0; i < R; ++i) y[i * yrs + j * ycs] = T(double(col[i]) * acc[i]);
    }
  }
}

// NaN values of a gathered column are squeezed out in place (the store always happens, the
// position advances only for a number); returns the count kept and adds (x - x) of the kept
// values to *bad (NaN iff one is infinite).
template <class T>
inline int64_t drop_nan(T* __restrict__ a, int64_t n, double* bad) {
  int64_t m = 0;
  double acc = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    const T v = a[i];
    a[m] = v;
    m += v == v ? 1 : 0;
    acc += v == v ? double(v - v) : 0.0;
  }
  *bad += acc;
  return m;
}

template <class T>
double gather(const PrepBlock& b, void* bufv, int64_t ld, int64_t* __restrict__ counts) {
  // Plain transposed copy with a per-column sum of (x - x) (0 unless NaN or inf occur); only
  // columns where that sum is NaN take the NaN-dropping pass over their gathered copy, so
  // NaN-free data costs what it did before NaN support.
  const T* x = static_cast<const T*>(b.x);
  T* buf = static_cast<T*>(bufv);
  const int64_t R = b.rows, C = b.cols;
  double bad = 0.0;
  auto finish = [&](int64_t j, double col_bad) {
    counts[j] = R;
    if (col_bad != col_bad) counts[j] = drop_nan(buf + j * ld, R, &bad);
  };
  if (b.rs == 1) {
    for (int64_t j = 0; j < C; ++j) {
      const T* __restrict__ col = x + j * b.cs;
      T* __restrict__ dst = buf + j * ld;
      for (int64_t i = 0; i < R; ++i) dst[i] = col[i];
      finish(j, sum16(col, R, [](double v) { return v - v; }));
    }
    return bad;
  }
  for (int64_t j0 = 0; j0 < C; j0 += kAcc) {
    const int64_t jn = C - j0 < kAcc ? C - j0 : kAcc;
    double acc[kAcc] = {};
    for (int64_t i = 0; i < R; ++i) {
      const T* __restrict__ r = x + i * b.rs + j0 * b.cs;
      for (int64_t k = 0; k < jn; ++k) {
        const T v = r[k * b.cs];
        buf[(j0 + k) * ld + i] = v;
        acc[k] += double(v - v);
      }
    }
    for (int64_t k = 0; k < jn; ++k) finish(j0 + k, acc[k]);
  }
  return bad;
}

// Quickselect: afterwards a[k] is the k-th smallest of a[lo..hi], smaller or equal elements
// before it, larger or equal after it. Median-of-three pivot; branch-free Lomuto partition
// (the compare result advances the boundary instead of a branch, so random data costs no
// mispredictions). When the pivot value repeats (few elements below it), a second branch-free
// pass gathers the elements equal to the pivot, so constant or few-valued columns stay linear.
template <class T>
void select_kth(T* a, int64_t lo, int64_t hi, int64_t k) {
  while (hi > lo) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] < a[lo]) { T t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
    if (a[hi] < a[lo]) { T t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
    if (a[hi] < a[mid]) { T t = a[hi]; a[hi] = a[mid]; a[mid] = t; }
    // pivot = median, parked at hi
    { T t = a[mid]; a[mid] = a[hi]; a[hi] = t; }
    const T pivot = a[hi];
    int64_t j = lo;
    for (int64_t i = lo; i < hi; ++i) {
      const T v = a[i];
      a[i] = a[j];
      a[j] = v;
      j += v < pivot ? 1 : 0;
    }
    { T t = a[j]; a[j] = a[hi]; a[hi] = t; }  // a[lo..j) < pivot = a[j] <= a(j..hi]
    if (k < j) {
      hi = j - 1;
      continue;
    }
    // a(j..hi] >= pivot: move the elements equal to the pivot next to it
    int64_t e = j + 1;
    for (int64_t i = j + 1; i <= hi; ++i) {
      const T v = a[i];
      a[i] = a[e];
      a[e] = v;
      e += v == pivot ? 1 : 0;
    }
    if (k < e) return;  // a[j..e) == pivot
    lo = e;
  }
}

// Branch-free candidate copy: every value is stored at the end of each bracket's buffer, and
// that buffer's length advances only when the value lies inside the bracket.
template <class T, int NQ>
inline void extract(const T* __restrict__ a, int64_t n, const T* lo, const T* hi, T* __restrict__ scratch,
                    int64_t cap, int64_t* m, int64_t* below, int nq = NQ) {
  T l[NQ], h[NQ];
  T sink = T(0);
  T* buf[NQ];
  int64_t len[NQ], bl[NQ];
  for (int q = 0; q < NQ; ++q) {
    l[q] = q < nq ? lo[q] : T(1);
    h[q] = q < nq ? hi[q] : T(0);  // empty bracket for unused slots
    buf[q] = q < nq ? scratch + q * (cap + 1) : &sink;  // unused slots write to a sink
    len[q] = bl[q] = 0;
  }
  for (int64_t i = 0; i < n; ++i) {
    const T v = a[i];
    for (int q = 0; q < NQ; ++q) {
      buf[q][len[q]] = v;
      len[q] += int64_t(v >= l[q]) & int64_t(v <= h[q]);
      bl[q] += int64_t(v < l[q]);
    }
  }
  for (int q = 0; q < nq; ++q) {
    m[q] = len[q];
    below[q] = bl[q];
  }
}

// Value at rank k (0-based) of a[0..n) and, when want_next, the value at rank k + 1 (the
// minimum of the part above k after the selection). a is reordered.
template <class T>
inline void rank_pair(T* a, int64_t n, int64_t k, bool want_next, double& lower, double& upper) {
  select_kth(a, 0, n - 1, k);
  lower = double(a[k]);
  upper = lower;
  if (want_next && k + 1 < n) {
    T m = a[k + 1];
    for (int64_t i = k + 2; i < n; ++i) m = a[i] < m ? a[i] : m;
    upper = double(m);
  }
}

// NumPy's "linear" percentile: v = (n - 1) q, lower = rank floor(v), upper = rank floor(v) + 1,
// g = v - floor(v), result = lower + (upper - lower) g (upper - (upper - lower)(1 - g) if g >= 0.5).
//
// Selection (in the spirit of Floyd & Rivest's SELECT, CACM 1975): for long columns, pivots
// bracketing each wanted rank are taken from a strided sample of 8192 values (selected, not
// sorted); one branch-free pass counts the values below each bracket and copies the values
// inside it to scratch (nq buffers of cap + 1); the wanted ranks are then selected among
// those few candidates. If a bracket misses its rank (or overflows cap) the column falls
// back to quickselect on all of a (reordering it), so the result is always exact.
template <class T>
void quantiles(void* av, int64_t n, const double* qs, int nq, double* out, void* scratch_v, int64_t cap) {
  T* a = static_cast<T*>(av);
  T* scratch = static_cast<T*>(scratch_v);
  constexpr int kMaxQ = 8;
  constexpr int64_t kSample = 8192;
  int64_t ks[kMaxQ];
  double gs[kMaxQ];
  for (int q = 0; q < nq; ++q) {
    const double v = double(n - 1) * (qs[q] / 100.0);
    int64_t k = int64_t(v);
    if (k > n - 1) k = n - 1;
    if (k < 0) k = 0;
    ks[q] = k;
    gs[q] = v - double(k);
  }
  double lower[kMaxQ], upper[kMaxQ];
  bool ok = false;
  if (n >= 4096 && nq <= kMaxQ && scratch) {
    T sample[kSample];
    const int64_t ns = n / 16 < kSample ? n / 16 : kSample;
    const int64_t stride = n / ns;
    for (int64_t i = 0; i < ns; ++i) sample[i] = a[i * stride];
    T lo[kMaxQ] = {}, hi[kMaxQ] = {};
    // a sample rank has standard deviation <= sqrt(ns) / 2: bracket +-(4 sd + 8)
    const int64_t delta = int64_t(2.0 * __builtin_sqrt(double(ns))) + 8;
    for (int q = 0; q < nq; ++q) {
      const int64_t r = int64_t(double(ks[q]) / double(n - 1) * double(ns - 1) + 0.5);
      const int64_t rl = r - delta < 0 ? 0 : r - delta;
      const int64_t rh = r + delta > ns - 1 ? ns - 1 : r + delta;
      // brackets that reach the ends of the sample extend to the ends of the data
      select_kth(sample, 0, ns - 1, rl);
      lo[q] = rl == 0 ? T(-__builtin_inf()) : sample[rl];
      select_kth(sample, 0, ns - 1, rh);
      hi[q] = rh == ns - 1 ? T(__builtin_inf()) : sample[rh];
    }
    // one branch-free pass: values below each bracket are counted, values inside are copied
    int64_t below[kMaxQ] = {}, m[kMaxQ] = {};
    const bool fits = cap >= n;  // every buffer can take all n values
    if (fits) {
      switch (nq) {  // compile-time bracket counts keep the buffer lengths in registers
        case 1: extract<T, 1>(a, n, lo, hi, scratch, cap, m, below); break;
        case 2: extract<T, 2>(a, n, lo, hi, scratch, cap, m, below); break;
        case 3: extract<T, 3>(a, n, lo, hi, scratch, cap, m, below); break;
        default: extract<T, kMaxQ>(a, n, lo, hi, scratch, cap, m, below, nq); break;
      }
    }
    ok = true;
    for (int q = 0; q < nq && ok; ++q) {
      const int64_t k = ks[q] - below[q];
      const bool want_next = gs[q] > 0.0 && ks[q] + 1 < n;
      if (!fits || k < 0 || k >= m[q] || (want_next && k + 1 >= m[q])) {
        ok = false;
        break;
      }
      rank_pair(scratch + q * (cap + 1), m[q], k, want_next, lower[q], upper[q]);
    }
  }
  if (!ok) {
    int64_t done = -1;  // a[0..done] hold the smallest done+1 values, a[done] the largest of them
    for (int q = 0; q < nq; ++q) {
      const int64_t k = ks[q];
      if (k > done) {
        select_kth(a, done + 1, n - 1, k);
        done = k;
      }
      lower[q] = double(a[k]);
      upper[q] = lower[q];
      if (k + 1 < n && gs[q] > 0.0) {
        T mn = a[k + 1];
        for (int64_t i = k + 2; i < n; ++i) mn = a[i] < mn ? a[i] : mn;
        upper[q] = double(mn);
      }
    }
  }
  for (int q = 0; q < nq; ++q) {
    const double g = gs[q], diff = upper[q] - lower[q];
    out[q] = g >= 0.5 ? upper[q] - diff * (1.0 - g) : lower[q] + diff * g;
  }
}

}  // namespace
NK_KERNEL_NAMESPACE_END

NK_DEFINE_ISA_TABLE(PrepKernels, prep_kernels) = {
    {&nk::NK_ISA_NS::col_stats<float>, &nk::NK_ISA_NS::col_stats<double>},
    {&nk::NK_ISA_NS::affine<float>, &nk::NK_ISA_NS::affine<double>},
    {&nk::NK_ISA_NS::normalize<float>, &nk::NK_ISA_NS::normalize<double>},
    {&nk::NK_ISA_NS::gather<float>, &nk::NK_ISA_NS::gather<double>},
    {&nk::NK_ISA_NS::quantiles<float>, &nk::NK_ISA_NS::quantiles<double>},
};

// ---- centred cross-product (covariance) for PCA / ZCA on tall data ------------------------
// C = sum_r (x_r - mean)(x_r - mean)^T in one pass over X, for rows >> cols. Rows are taken
// in chunks of kGramChunkRows (a cache-resident block, like the blocked SYRK of GotoBLAS,
// Goto & van de Geijn, ACM TOMS 2008): pass 1 over the chunk gives its mean and per-column
// range, pass 2 packs the centred values (corrected two-pass: the residual sums s of the
// packed values refine the mean and give the -s s^T / n correction, Chan, Golub & LeVeque,
// "Algorithms for computing the sample variance", Am. Stat. 1983) into a row-major buffer,
// and register tiles (MR rows x one vector, outer-product form) accumulate the upper triangle
// of P^T P. Each tile is merged at once into the running result with the matrix form of Chan's
// pairwise update (Chan, Golub & LeVeque, Stanford CS-TR-79-773, 1979; the covariance form is
// eq. (2.1) of Schubert & Gertz, "Numerically stable parallel computation of (co-)variance",
// SSDBM 2018):  C = C_a + C_b + (n_a n_b / n) (m_b - m_a)(m_b - m_a)^T.
// Float32 data (entry 0): packed values are float32, scaled per column by a power of two
// (exact) so that |p| < 1 — products and sums of 128 of them cannot overflow or underflow —
// and each product sum spans one chunk (<= 128 rows) before it is rounded into the float64
// result: the error is that of a 128-term float32 sum, relative 128 u ~ 8e-6 of sum |p_i p_j|
// in the worst case, instead of the 1e6-term sum a float32 GEMM makes. Entries 1 and 2 form
// float64 products (float64 data; float32 data when asked). Every value's summation order is
// fixed by the chunking alone: results do not depend on the thread count or the memory order.
NK_KERNEL_NAMESPACE_BEGIN
namespace {

template <class A>
struct GramShape {
  static constexpr int N = Simd<A>::N;
  // MR rows x one vector: 8 independent accumulators cover the FMA latency x throughput of
  // AVX-512 on Zen 4 (one 512-bit FMA per cycle) and of AVX2 (two 256-bit FMAs, 4 cycles).
  // Narrow column blocks (one vector) waste less of each block on the diagonal and padding
  // than two-vector blocks (100 columns: 5,824 products per row against 7,808; 5,050 needed).
  static constexpr int MR = 8;
  static_assert(kGramPad % MR == 0 && kGramPad % N == 0, "tiles must divide the padding");
};

// out[i][v * N + k] = sum_r P[r][ib + i] * P[r][jb + v * N + k] over the kc rows of the chunk
template <class A, int MR, int NR>
inline void gram_tile(const A* __restrict__ P, int64_t ld, int64_t kc, int64_t ib, int64_t jb,
                      A* __restrict__ out) {
  using S = Simd<A>;
  using V = typename S::V;
  constexpr int N = S::N;
  V acc[MR][NR];
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NR; ++v) acc[i][v] = V{};
  const A* __restrict__ pi = P + ib;
  const A* __restrict__ pj = P + jb;
  for (int64_t r = 0; r < kc; ++r, pi += ld, pj += ld) {
    V b[NR];
    for (int v = 0; v < NR; ++v) b[v] = S::load(pj + v * N);
    for (int i = 0; i < MR; ++i) {
      const V a = pi[i] - V{};  // a broadcast load (S::splat's V{} + x keeps an add: -0.0 + 0.0 = +0.0)
      for (int v = 0; v < NR; ++v) acc[i][v] = fmadd(a, b[v], acc[i][v]);
    }
  }
  for (int i = 0; i < MR; ++i)
    for (int v = 0; v < NR; ++v) S::store(out + i * NR * N + v * N, acc[i][v]);
}

// m2[ib + i][jb + j] += tile * sig_i sig_j - s_i s_j / kc + f delta_i delta_j (float64)
template <class A, int MR, int W>
inline void gram_merge(const A* __restrict__ tile, int64_t ib, int64_t jb, int64_t ld, double* __restrict__ m2,
                       const double* __restrict__ sig, const double* __restrict__ s,
                       const double* __restrict__ delta, double neg_inv_kc, double f) {
  for (int i = 0; i < MR; ++i) {
    const double si = sig[ib + i], ci = s[ib + i] * neg_inv_kc, di = delta[ib + i] * f;
    double* __restrict__ row = m2 + (ib + i) * ld + jb;
    const A* __restrict__ t = tile + i * W;
    for (int j = 0; j < W; ++j)
      row[j] += (double(t[j]) * si) * sig[jb + j] + ci * s[jb + j] + di * delta[jb + j];
  }
}

// Transposed tile of the last, partial column block (rows rb + i >= nf of the result, columns
// cb + j): G is symmetric, so entry (rb + i, cb + j) is added to the upper triangle at
// (cb + j, rb + i) when cb + j < nf (not formed by the full blocks) or at (rb + i, cb + j) when
// cb + j >= rb + i (within the last block; the entries below its diagonal are the same pairs).
template <class A, int MR, int W>
inline void gram_merge_t(const A* __restrict__ tile, int64_t rb, int64_t cb, int64_t nf, int64_t cols, int64_t ld,
                         double* __restrict__ m2, const double* __restrict__ sig, const double* __restrict__ s,
                         const double* __restrict__ delta, double neg_inv_kc, double f) {
  for (int i = 0; i < MR && rb + i < cols; ++i) {
    const int64_t r = rb + i;
    const double si = sig[r], ci = s[r] * neg_inv_kc, di = delta[r] * f;
    const A* __restrict__ t = tile + i * W;
    for (int j = 0; j < W; ++j) {
      const int64_t c = cb + j;
      if (c >= cols) break;
      if (c >= nf && c < r) continue;
      const double v = (double(t[j]) * si) * sig[c] + ci * s[c] + di * delta[c];
      if (c < nf)
        m2[c * ld + r] += v;
      else
        m2[r * ld + c] += v;
    }
  }
}

constexpr int64_t kGramF32Cols = 1024;  // float32 pass-1 accumulators on the stack

// Per-column sum, minimum and maximum of kc rows, accumulated in S (float or double). Each
// column is summed in row order in both loop orders, so every memory layout gives the same bits.
template <class T, class S>
void chunk_sum_range(const T* xc, int64_t kc, int64_t cols, int64_t rs, int64_t cs, S* __restrict__ sum,
                     S* __restrict__ lo, S* __restrict__ hi) {
  if (cs == 1) {
    for (int64_t j = 0; j < cols; ++j) sum[j] = S(0), lo[j] = hi[j] = S(xc[j]);
    for (int64_t r = 0; r < kc; ++r) {
      const T* __restrict__ row = xc + r * rs;
      for (int64_t j = 0; j < cols; ++j) {
        const S v = S(row[j]);
        sum[j] += v;
        lo[j] = v < lo[j] ? v : lo[j];
        hi[j] = v > hi[j] ? v : hi[j];
      }
    }
    return;
  }
  for (int64_t j = 0; j < cols; ++j) {
    const T* __restrict__ col = xc + j * cs;
    S t = S(0), l = S(col[0]), h = l;
    for (int64_t r = 0; r < kc; ++r) {
      const S v = S(col[r * rs]);
      t += v;
      l = v < l ? v : l;
      h = v > h ? v : h;
    }
    sum[j] = t, lo[j] = l, hi[j] = h;
  }
}

template <class T, class A>
void centered_gram(const void* xv, int64_t rows, int64_t cols, int64_t rs, int64_t cs, double* __restrict__ mean,
                   double* __restrict__ m2, int64_t ld, double* work) {
  using G = GramShape<A>;
  constexpr int N = G::N, MR = G::MR;
  const T* x = static_cast<const T*>(xv);
  A* __restrict__ P = reinterpret_cast<A*>(work);
  double* __restrict__ cm = work + kGramChunkRows * ld;  // chunk mean
  double* __restrict__ lo = cm + ld;                     // chunk minimum, then 1 / sig
  double* __restrict__ hi = lo + ld;
  double* __restrict__ sig = hi + ld;                    // per-column power-of-two scale
  double* __restrict__ s = sig + ld;                     // residual sums of the packed values
  double* __restrict__ delta = s + ld;                   // chunk mean - running mean
  for (int64_t k = 0; k < ld * ld; ++k) m2[k] = 0.0;
  for (int64_t j = 0; j < cols; ++j) mean[j] = 0.0;
  for (int64_t j = cols; j < ld; ++j) sig[j] = 1.0, s[j] = 0.0, delta[j] = 0.0;
  alignas(64) A tile[MR * N];
  double n_a = 0.0;
  for (int64_t r0 = 0; r0 < rows; r0 += kGramChunkRows) {
    const int64_t kc = rows - r0 < kGramChunkRows ? rows - r0 : kGramChunkRows;
    const T* xc = x + r0 * rs;
    const double inv_kc = 1.0 / double(kc);
    // pass 1: chunk mean and range
    if (std::is_same<T, float>::value && cols <= kGramF32Cols) {
      // float32 data: min/max are exact in float32 and the centre only needs to be near the mean
      // (the residual sums s correct it), so pass 1 runs in float32 (half the vectors of the
      // float64 form). A float32 sum that overflows falls back to the midrange.
      alignas(64) float fs[kGramF32Cols], fl[kGramF32Cols], fh[kGramF32Cols];
      chunk_sum_range(xc, kc, cols, rs, cs, fs, fl, fh);
      for (int64_t j = 0; j < cols; ++j) {
        lo[j] = double(fl[j]), hi[j] = double(fh[j]);
        const double sum = double(fs[j]);
        cm[j] = sum - sum == 0.0 ? sum : (0.5 * lo[j] + 0.5 * hi[j]) * double(kc);
      }
    } else {
      chunk_sum_range(xc, kc, cols, rs, cs, cm, lo, hi);
    }
    for (int64_t j = 0; j < cols; ++j) {
      cm[j] *= inv_kc;
      const double a = hi[j] - cm[j] > cm[j] - lo[j] ? hi[j] - cm[j] : cm[j] - lo[j];
      int e = 0;
      if (a > 0.0 && a <= __DBL_MAX__) __builtin_frexp(a, &e);  // a = m 2^e, m in [0.5, 1)
      sig[j] = __builtin_ldexp(1.0, e);
      lo[j] = __builtin_ldexp(1.0, -e);
      s[j] = 0.0;
    }
    // pass 2: pack p = (x - cm) / sig, |p| < 1
    if (cs == 1) {
      for (int64_t r = 0; r < kc; ++r) {
        const T* __restrict__ row = xc + r * rs;
        A* __restrict__ p = P + r * ld;
        for (int64_t j = 0; j < cols; ++j) {
          const double d = double(row[j]) - cm[j];
          s[j] += d;
          p[j] = A(d * lo[j]);
        }
        for (int64_t j = cols; j < ld; ++j) p[j] = A(0);
      }
    } else {
      for (int64_t j = 0; j < cols; ++j) {
        const T* __restrict__ col = xc + j * cs;
        const double mj = cm[j], ij = lo[j];
        double sj = 0.0;
        for (int64_t r = 0; r < kc; ++r) {
          const double d = double(col[r * rs]) - mj;
          sj += d;
          P[r * ld + j] = A(d * ij);
        }
        s[j] = sj;
      }
      for (int64_t r = 0; r < kc; ++r)
        for (int64_t j = cols; j < ld; ++j) P[r * ld + j] = A(0);
    }
    // Chan merge weights: corrected chunk mean cm + s / kc, delta = chunk mean - running mean
    const double n = n_a + double(kc), f = n_a * double(kc) / n, w = double(kc) / n;
    for (int64_t j = 0; j < cols; ++j) delta[j] = (cm[j] + s[j] * inv_kc) - mean[j];
    // Upper triangle by blocks of one vector of columns: full blocks [jb, jb + N) take rows
    // [0, jb + N) (the diagonal block's lower half is scratch). The last, partial block (t < N
    // columns) is formed transposed, as its t rows against all columns, when that is no larger
    // (vectors of >= 8: rows rounded to 4 or 8, always within the padding); else as a block.
    const int64_t nf = N >= 8 ? cols / N * N : cols;
    // The tiles are compute-bound: meanwhile bring the next chunk (C order: rows of cols
    // contiguous elements) into L2, a few rows per tile, so that its passes 1 and 2 do not
    // wait for DRAM (measured: the two passes took 66 of 250 ms, mostly the stream from memory).
    const int64_t pf_end = r0 + kc + kGramChunkRows < rows ? r0 + kc + kGramChunkRows : rows;
    int64_t pf_row = r0 + kc;
    const auto prefetch_rows = [&](int64_t nr) {
      if (cs != 1 || cols * int64_t(sizeof(T)) * kGramChunkRows > (int64_t(256) << 10)) return;  // fits L2 beside P
      for (; nr > 0 && pf_row < pf_end; --nr, ++pf_row) {
        const char* row = reinterpret_cast<const char*>(x + pf_row * rs);
        for (int64_t b = 0; b < cols * int64_t(sizeof(T)); b += 64) __builtin_prefetch(row + b, 0, 2);
        __builtin_prefetch(row + cols * int64_t(sizeof(T)) - 1, 0, 2);
      }
    };
    for (int64_t jb = 0; jb < nf; jb += N) {
      for (int64_t ib = 0; ib < jb + N; ib += MR) {
        prefetch_rows(4);
        gram_tile<A, MR, 1>(P, ld, kc, ib, jb, tile);
        gram_merge<A, MR, N>(tile, ib, jb, ld, m2, sig, s, delta, -inv_kc, f);
      }
    }
    if (nf < cols) {
      if (cols - nf <= 4) {
        for (int64_t cb = 0; cb < cols; cb += N) {
          prefetch_rows(4);
          gram_tile<A, 4, 1>(P, ld, kc, nf, cb, tile);
          gram_merge_t<A, 4, N>(tile, nf, cb, nf, cols, ld, m2, sig, s, delta, -inv_kc, f);
        }
      } else {
        for (int64_t rb = nf; rb < cols; rb += MR)
          for (int64_t cb = 0; cb < cols; cb += N) {
            prefetch_rows(4);
            gram_tile<A, MR, 1>(P, ld, kc, rb, cb, tile);
            gram_merge_t<A, MR, N>(tile, rb, cb, nf, cols, ld, m2, sig, s, delta, -inv_kc, f);
          }
      }
    }
    prefetch_rows(kGramChunkRows);
    for (int64_t j = 0; j < cols; ++j) mean[j] += delta[j] * w;
    n_a = n;
  }
}

}  // namespace
NK_KERNEL_NAMESPACE_END

NK_DEFINE_ISA_TABLE(PrepGramKernels, prep_gram_kernels) = {
    {&nk::NK_ISA_NS::centered_gram<float, float>, &nk::NK_ISA_NS::centered_gram<double, double>,
     &nk::NK_ISA_NS::centered_gram<float, double>},
};
