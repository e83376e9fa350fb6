// Normalization kernels (layer norm, batch norm; forward and backward), per ISA level.
// Kernels work on a given range of rows / a contiguous run; threading, fixed chunking and
// the combination of per-chunk partials live in the CPU driver, csrc/drivers/normalization.cpp.
#pragma once
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/common.hpp"
#include "core/isa_table.hpp"

namespace nk {

// Activation fused after the affine step (forward) / differentiated from the saved output y (backward).
enum NormActivation : int { kNormActNone = 0, kNormActRelu = 1, kNormActLeakyRelu = 2 };

// Sub-block of rows whose per-column float sums are flushed into double partials, and the
// column tile width of the column kernels (a tile of kNormSubRows rows stays in L2).
constexpr int64_t kNormSubRows = 64;
constexpr int64_t kNormColTile = 1024;

// T: the storage type of x, y, dout, dx; C: the type of the arithmetic, of gamma/beta, mean/rstd and
// scratch (float for the 16-bit types: mean and rstd of 16-bit data are always float32).
template <class T>
struct NormKernelsT {
  using C = compute_of_t<T>;
  // Layer norm forward over `rows` rows of length d (row strides xs, ys in elements):
  // y = act(((x - mean) * rstd) * gamma + beta); writes mean[r], rstd[r]. gamma/beta: d values.
  void (*ln_fwd)(const T* x, int64_t xs, T* y, int64_t ys, const C* gamma, const C* beta, C* mean, C* rstd,
                 int64_t rows, int64_t d, double eps, int act, double slope, bool stream);
  // Layer norm backward: dx rows (stride dxs). With `part` (2*d doubles: dgamma | dbeta) the
  // partial sums of these rows are stored there (overwritten); `scratch` holds 2*d C values.
  void (*ln_bwd)(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, const C* gamma,
                 const C* mean, const C* rstd, T* dx, int64_t dxs, double* part, C* scratch, int64_t rows, int64_t d,
                 int act, double slope, bool stream);
  // Per-column statistics of `rows` rows of width w (double, overwritten): mean = shift + rel with
  // shift a value of type T (the first block's mean; exact) and rel small, m2 = sum of squared deviations.
  void (*col_stats)(const T* x, int64_t xs, int64_t rows, int64_t w, double* shift, double* rel, double* m2);
  // The same for a contiguous run of n values.
  void (*run_stats)(const T* x, int64_t n, double* shift, double* rel, double* m2);
  // y = act(((x - p_mh) - p_ml) * p_scale + p_shift), params per column: p = [mh | ml | scale | shift] (4*w).
  void (*col_apply)(const T* x, int64_t xs, T* y, int64_t ys, int64_t rows, int64_t w, const C* p, int act,
                    double slope, bool stream);
  // Same on a contiguous run with scalar params p[0..4).
  void (*run_apply)(const T* x, T* y, int64_t n, const C* p, int act, double slope, bool stream);
  // Batch-norm backward reduction per column: out3 = [sum g | sum g*(x-m) | sum (x-m)] (3*w doubles,
  // overwritten), g = dout passed back through the activation (from y).
  void (*col_bwd_reduce)(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, int64_t rows,
                         int64_t w, const C* m, double* out3, int act, double slope);
  void (*run_bwd_reduce)(const T* dout, const T* x, const T* y, int64_t n, C m, double* out3, int act, double slope);
  // dx = A*g + K*((x - mh) - ml) + B, params per column p = [mh | ml | A | K | B] (5*w).
  void (*col_bwd_apply)(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, T* dx,
                        int64_t dxs, int64_t rows, int64_t w, const C* p, int act, double slope, bool stream);
  void (*run_bwd_apply)(const T* dout, const T* x, const T* y, T* dx, int64_t n, const C* p, int act, double slope,
                        bool stream);
  // Whether some v[i] (i < n) is outside [lo, inf): any_outside_scalar, vectorised (wide_floor).
  bool (*any_outside)(const double* v, int64_t n, double lo);
};

// ---------------------------------------------------------------- extreme magnitudes
// A row / channel of finite values whose fast statistics cannot be right: squares of deviations
// beyond sqrt(max) overflow the float sum of squares (|x - mean| > ~1.8e19 in float32: M2 = inf,
// rstd = 0, y = 0 everywhere), a sum beyond max overflows the mean, squares below the smallest
// normal value flush the variance towards 0 (visible only with an eps smaller still), and a
// constant row whose float mean is not exactly its value leaves y = beta + (x - mh) * rstd rounding
// error (2048 for a constant row of 1e15). Each is detected from the fast pass's own results
// (wide_needed: a few scalar compares per row / channel, nothing per element) and only such rows /
// channels are redone by wide_stats: two passes in a wider type (double for float32, long double
// for float64), exact for a constant run. These helpers are compiled into each translation unit
// (internal linkage), so each ISA level's kernels use their own copy.
namespace {
template <class T> using WideOf = typename std::conditional<sizeof(T) == 4, double, long double>::type;
template <class T> struct WideStats {
  bool finite = true;  // false: a NaN or an infinity (the fast results stand: non-finite in, non-finite out)
  T lo = 0, hi = 0;
  WideOf<T> mean = 0, m2 = 0;
};
// Statistics of n values get(i) (n >= 1).
template <class T, class G> __attribute__((noinline, cold)) WideStats<T> wide_stats(int64_t n, G&& get) {
  using W = WideOf<T>;
  WideStats<T> s;
  W sum = 0;
  T lo = get(0), hi = lo;
  for (int64_t i = 0; i < n; ++i) {
    const T v = get(i);
    if (!(v - v == 0)) { s.finite = false; return s; }  // NaN or +-inf
    lo = v < lo ? v : lo;
    hi = v > hi ? v : hi;
    sum += W(v);
  }
  s.lo = lo;
  s.hi = hi;
  if (lo == hi) { s.mean = W(lo); return s; }  // constant: exact mean, m2 = 0
  const W m = sum / W(n);
  W s1 = 0, s2 = 0;
  for (int64_t i = 0; i < n; ++i) {
    const W dv = W(get(i)) - m;
    s1 += dv;
    s2 += dv * dv;
  }
  s.mean = m + s1 / W(n);
  s.m2 = s2 - s1 * s1 / W(n);
  if (s.m2 < 0) s.m2 = 0;
  return s;
}
// The centre mh (a T value) that the kernels subtract, y = (x - mh) * rstd + (mh - mean) * rstd:
// the rounded mean (x - mh exact near the mean), or the midpoint of [lo, hi] when x - mean could
// overflow T (values spread over more than max: |x - midpoint| <= (hi - lo) / 2 <= max).
template <class T> T wide_center(const WideStats<T>& s) {
  using W = WideOf<T>;
  const T m = T(s.mean);
  const W mx = W(std::numeric_limits<T>::max());
  if (W(s.hi) - W(m) <= mx && W(m) - W(s.lo) <= mx) return m;
  return s.lo / 2 + s.hi / 2;
}
// Whether fast statistics (sum of squared deviations s2 >= 0 and variance var of a run of values,
// mean offset rel from the centre the kernel subtracted, given eps) need wide_stats. Variances
// below tiny_var are redone only when eps is below tiny_var * 2^30 (else eps dominates them).
template <class T> constexpr double kWideTinyVar = sizeof(T) == 4 ? 0x1p-90 : 0x1p-900;
template <class T> inline bool wide_needed(double s2, double var, double rel, double eps) {
  constexpr double tiny_var = kWideTinyVar<T>;
  return !(s2 <= std::numeric_limits<double>::max()) || (var <= 0 && rel != 0) ||
         (var < tiny_var && eps < tiny_var * 0x1p30);
}
// Whether any of n sums of squares m2[i] (of `count` values each) may need wide_needed's test: one
// integer range test per value on its bits (the bits of non-negative doubles order as their
// values), so the loop vectorises; a batch-norm call checks C channels with it (measured: the
// scalar test per channel cost 0.3-0.6 us of a 5 us (32, 256) call). Flags m2 = 0 (zero variance),
// m2 / count below the tiny variance (when eps is tiny too: lo = wide_floor), inf, NaN and -0.
// The loop runs as a kernel (NormKernelsT::any_outside, vectorised per ISA level).
template <class T> inline double wide_floor(double count, double eps) {
  return eps < kWideTinyVar<T> * 0x1p30 ? kWideTinyVar<T> * count : 0x1p-1074;
}
inline bool any_outside_scalar(const double* v, int64_t n, double lo) {
  uint64_t lo_bits, inf_bits;
  const double inf = std::numeric_limits<double>::infinity();
  __builtin_memcpy(&lo_bits, &lo, 8);
  __builtin_memcpy(&inf_bits, &inf, 8);
  const uint64_t range = inf_bits - lo_bits;  // [lo, inf) is fine
  uint64_t any = 0;
  for (int64_t i = 0; i < n; ++i) {
    uint64_t b;
    __builtin_memcpy(&b, v + i, 8);
    any |= uint64_t(b - lo_bits >= range);
  }
  return any != 0;
}
}  // namespace

struct NormalizationKernels {
  NormKernelsT<float> f32;
  NormKernelsT<double> f64;
  NormKernelsT<float16_t> f16;
  NormKernelsT<bfloat16_t> bf16;
};

}  // namespace nk

NK_DECLARE_ISA_TABLE(NormalizationKernels, normalization_kernels)
