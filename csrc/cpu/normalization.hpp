// Normalization kernels (layer norm, batch norm; forward and backward), per ISA level.
// Kernels work on a given range of rows / a contiguous run; threading, fixed chunking and
// the combination of per-chunk partials live in csrc/bindings/normalization.cpp.
#pragma once
#include "core/common.hpp"
#include "core/isa_table.hpp"

namespace nk {

// Activation fused after the affine step (forward) / differentiated from the saved output y (backward).
enum NormActivation : int { kNormActNone = 0, kNormActRelu = 1, kNormActLeakyRelu = 2 };

// Sub-block of rows whose per-column float sums are flushed into double partials, and the
// column tile width of the column kernels (a tile of kNormSubRows rows stays in L2).
constexpr int64_t kNormSubRows = 64;
constexpr int64_t kNormColTile = 1024;

template <class T>
struct NormKernelsT {
  // Layer norm forward over `rows` rows of length d (row strides xs, ys in elements):
  // y = act(((x - mean) * rstd) * gamma + beta); writes mean[r], rstd[r]. gamma/beta: d values.
  void (*ln_fwd)(const T* x, int64_t xs, T* y, int64_t ys, const T* gamma, const T* beta, T* mean, T* rstd,
                 int64_t rows, int64_t d, double eps, int act, double slope, bool stream);
  // Layer norm backward: dx rows (stride dxs). With `part` (2*d doubles: dgamma | dbeta) the
  // partial sums of these rows are stored there (overwritten); `scratch` holds 2*d T values.
  void (*ln_bwd)(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, const T* gamma,
                 const T* mean, const T* rstd, T* dx, int64_t dxs, double* part, T* scratch, int64_t rows, int64_t d,
                 int act, double slope, bool stream);
  // Per-column statistics of `rows` rows of width w (double, overwritten): mean = shift + rel with
  // shift a value of type T (the first block's mean; exact) and rel small, m2 = sum of squared deviations.
  void (*col_stats)(const T* x, int64_t xs, int64_t rows, int64_t w, double* shift, double* rel, double* m2);
  // The same for a contiguous run of n values.
  void (*run_stats)(const T* x, int64_t n, double* shift, double* rel, double* m2);
  // y = act(((x - p_mh) - p_ml) * p_scale + p_shift), params per column: p = [mh | ml | scale | shift] (4*w).
  void (*col_apply)(const T* x, int64_t xs, T* y, int64_t ys, int64_t rows, int64_t w, const T* p, int act,
                    double slope, bool stream);
  // Same on a contiguous run with scalar params p[0..4).
  void (*run_apply)(const T* x, T* y, int64_t n, const T* p, int act, double slope, bool stream);
  // Batch-norm backward reduction per column: out3 = [sum g | sum g*(x-m) | sum (x-m)] (3*w doubles,
  // overwritten), g = dout passed back through the activation (from y).
  void (*col_bwd_reduce)(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, int64_t rows,
                         int64_t w, const T* m, double* out3, int act, double slope);
  void (*run_bwd_reduce)(const T* dout, const T* x, const T* y, int64_t n, T m, double* out3, int act, double slope);
  // dx = A*g + K*((x - mh) - ml) + B, params per column p = [mh | ml | A | K | B] (5*w).
  void (*col_bwd_apply)(const T* dout, int64_t ds, const T* x, int64_t xs, const T* y, int64_t yss, T* dx,
                        int64_t dxs, int64_t rows, int64_t w, const T* p, int act, double slope, bool stream);
  void (*run_bwd_apply)(const T* dout, const T* x, const T* y, T* dx, int64_t n, const T* p, int act, double slope,
                        bool stream);
};

struct NormalizationKernels {
  NormKernelsT<float> f32;
  NormKernelsT<double> f64;
};

}  // namespace nk

NK_DECLARE_ISA_TABLE(NormalizationKernels, normalization_kernels)
