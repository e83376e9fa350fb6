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

#include "core/simd.hpp"

NK_KERNEL_NAMESPACE_BEGIN
namespace {

constexpr int kAcc = 16;

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

template <class T>
void col_stats(const PrepBlock& b, int flags, double* __restrict__ mean, double* __restrict__ m2,
               double* __restrict__ mn, double* __restrict__ mx, double* __restrict__ bad,
               double* __restrict__ scratch) {
  const T* x = static_cast<const T*>(b.x);
  const int64_t R = b.rows, C = b.cols, rs = b.rs, cs = b.cs;
  const double inv_r = 1.0 / double(R);
  if (flags & (kPrepMean | kPrepMoments)) {
    if (cs == 1) {
      // pass 1: mean[j] = sum_i x[i, j] / R ; pass 2: d = x - mean, m2 = sum d^2 - (sum d)^2 / R
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
        for (int64_t j = 0; j < C; ++j) {
          const double v = m2[j] - scratch[j] * scratch[j] * inv_r;
          m2[j] = v > 0.0 ? v : 0.0;
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
        }
      }
    }
  }
  if (flags & kPrepMinMax) {
    if (cs == 1) {
      // min/max exact in the data type; bad[j] = sum (x - x): 0 for finite data, NaN otherwise
      for (int64_t j = 0; j < C; ++j) {
        mn[j] = mx[j] = double(x[j]);
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
        for (int k = 0; k < kAcc; ++k) lo[k] = hi[k] = col[0];
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
            const double* __restrict__ s, const double* __restrict__ c) {
  const T* x = static_cast<const T*>(b.x);
  T* y = static_cast<T*>(yv);
  const int64_t R = b.rows, C = b.cols;
  if (b.cs == 1 && ycs == 1) {
    for (int64_t i = 0; i < R; ++i) {
      const T* __restrict__ r = x + i * b.rs;
      T* __restrict__ o = y + i * yrs;
      if (c)
        for (int64_t j = 0; j < C; ++j) o[j] = T((double(r[j]) - a[j]) * s[j] + c[j]);
      else
        for (int64_t j = 0; j < C; ++j) o[j] = T((double(r[j]) - a[j]) * s[j]);
    }
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

template <class T>
inline double row_norm_contig(const T* __restrict__ r, int64_t C, int norm) {
  if (norm == kNormL2) return __builtin_sqrt(sum16(r, C, [](double v) { return v * v; }));
  if (norm == kNormL1) return sum16(r, C, [](double v) { return absd(v); });
  double m[kAcc] = {};
  int64_t j = 0;
  for (; j + kAcc <= C; j += kAcc)
    for (int k = 0; k < kAcc; ++k) {
      const double v = absd(double(r[j + k]));
      m[k] = v > m[k] ? v : m[k];
    }
  double bd = 0.0;  // NaN must not vanish in the max
  for (int k = 0; j + k < C; ++k) {
    const double v = absd(double(r[j + k]));
    m[k] = v > m[k] ? v : m[k];
  }
  for (int64_t t = 0; t < C; ++t) bd += double(r[t] - r[t]);
  double best = m[0];
  for (int k = 1; k < kAcc; ++k) best = m[k] > best ? m[k] : best;
  return best + bd;
}

template <class T>
void normalize(const PrepBlock& b, void* yv, int64_t yrs, int64_t ycs, int norm, double* __restrict__ norms,
               double* __restrict__ scratch) {
  const T* x = static_cast<const T*>(b.x);
  T* y = static_cast<T*>(yv);
  const int64_t R = b.rows, C = b.cols;
  if (b.cs == 1) {
    for (int64_t i = 0; i < R; ++i) {
      const T* __restrict__ r = x + i * b.rs;
      const double nv = row_norm_contig(r, C, norm);
      norms[i] = nv;
      const double inv = 1.0 / (nv == 0.0 ? 1.0 : nv);
      T* __restrict__ o = y + i * yrs;
      if (ycs == 1)
        for (int64_t j = 0; j < C; ++j) o[j] = T(double(r[j]) * inv);
      else
        for (int64_t j = 0; j < C; ++j) o[j * ycs] = T(double(r[j]) * inv);
    }
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

template <class T>
double gather(const PrepBlock& b, void* bufv, int64_t ld) {
  const T* x = static_cast<const T*>(b.x);
  T* buf = static_cast<T*>(bufv);
  const int64_t R = b.rows, C = b.cols;
  double bad = 0.0;
  if (b.rs == 1) {
    for (int64_t j = 0; j < C; ++j) {
      const T* __restrict__ col = x + j * b.cs;
      T* __restrict__ dst = buf + j * ld;
      for (int64_t i = 0; i < R; ++i) dst[i] = col[i];
      bad += sum16(col, R, [](double v) { return v - v; });
    }
    return bad;
  }
  double acc[kAcc] = {};
  for (int64_t j0 = 0; j0 < C; j0 += kAcc) {
    const int64_t jn = C - j0 < kAcc ? C - j0 : kAcc;
    for (int64_t i = 0; i < R; ++i) {
      const T* __restrict__ r = x + i * b.rs + j0 * b.cs;
      for (int64_t k = 0; k < jn; ++k) {
        const T v = r[k * b.cs];
        buf[(j0 + k) * ld + i] = v;
        acc[k] += double(v - v);
      }
    }
  }
  combine16(acc);
  return acc[0];
}

// Wirth/Hoare selection: afterwards a[k] is the k-th smallest of a[lo..hi], smaller or equal
// elements before it, larger or equal after it. Median-of-three pivots (sorted and constant
// inputs partition evenly: the scans stop on elements equal to the pivot).
template <class T>
void select_kth(T* a, int64_t lo, int64_t hi, int64_t k) {
  while (hi > lo) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (a[mid] < a[lo]) { T t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
    if (a[hi] < a[lo]) { T t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
    if (a[hi] < a[mid]) { T t = a[hi]; a[hi] = a[mid]; a[mid] = t; }
    const T pivot = a[mid];
    int64_t i = lo, j = hi;
    while (i <= j) {
      while (a[i] < pivot) ++i;
      while (pivot < a[j]) --j;
      if (i <= j) {
        T t = a[i]; a[i] = a[j]; a[j] = t;
        ++i;
        --j;
      }
    }
    if (k <= j)
      hi = j;
    else if (k >= i)
      lo = i;
    else
      return;
  }
}

// NumPy's "linear" percentile: v = (n - 1) q, lower = a[floor v], upper = a[floor v + 1],
// g = v - floor v, result = lower + (upper - lower) g (or upper - (upper - lower)(1 - g) for g >= 0.5).
template <class T>
void quantiles(void* av, int64_t n, const double* qs, int nq, double* out) {
  T* a = static_cast<T*>(av);
  int64_t done = -1;  // a[0..done] hold the smallest done+1 elements, a[done] the largest of them
  for (int q = 0; q < nq; ++q) {
    const double v = double(n - 1) * (qs[q] / 100.0);
    int64_t k = int64_t(v);
    if (k > n - 1) k = n - 1;
    if (k < 0) k = 0;
    const double g = v - double(k);
    if (k > done) {
      select_kth(a, done + 1, n - 1, k);
      done = k;
    }
    const double lower = double(a[k]);
    double upper = lower;
    if (k + 1 < n && g > 0.0) {
      T m = a[k + 1];
      for (int64_t i = k + 2; i < n; ++i) m = a[i] < m ? a[i] : m;
      upper = double(m);
    }
    const double diff = upper - lower;
    out[q] = g >= 0.5 ? upper - diff * (1.0 - g) : lower + diff * g;
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
