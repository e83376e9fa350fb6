// Preprocessing ops on any device: one function type per op, the CPU drivers
// (drivers/preprocessing.cpp, over the ISA tables of cpu/preprocessing.cpp) and, for column
// statistics, the affine transform and row normalisation, the CUDA launchers
// (cuda/preprocessing.cu) registered. Operands arrive validated (bindings/preprocessing.cpp);
// every pointer below lives on X's device. CUDA matrices are C-contiguous.
#pragma once
#include <cstdint>

#include "core/dispatch.hpp"
#include "core/view.hpp"
#include "cpu/preprocessing.hpp"

namespace nk {

// A 2-D matrix in canonical form: element strides with cs == 1 (C order) or rs == 1 (F order).
struct Matrix {
  ArrayView v;
  int64_t rows = 0, cols = 0, rs = 0, cs = 0;
};
// The canonical form of a 2-D view with at least one row and column; false when it has none
// (neither rows nor columns unit-strided and packed), and the caller copies it to C order.
bool matrix_layout(const ArrayView& v, Matrix& m);

// Column statistics. out.* null: not wanted. count (with kPrepIgnoreNan or weights: the non-NaN
// count / weight sum per column; else rows), mean and m2 (kPrepMean / kPrepMoments), min/max of
// the non-NaN values (kPrepMinMax; NaN for a column without any), finite (CPU only): no statistic
// of a column with values is NaN or infinite. weight (one per row) and the prior (count, mean, m2
// of earlier data, merged first) are CPU-only. workspace: CUDA, col_stats_workspace(rows, cols) doubles.
struct ColStatsArgs {
  int flags = 0;
  const double* weight = nullptr;
  const double* prior_count = nullptr;
  const double* prior_mean = nullptr;
  const double* prior_m2 = nullptr;
  double* workspace = nullptr;
};
struct ColStatsOut {
  double* count = nullptr;
  double* mean = nullptr;
  double* m2 = nullptr;
  double* min = nullptr;
  double* max = nullptr;
  bool* finite = nullptr;
};
using ColStatsImpl = void (*)(const Matrix& x, const ColStatsArgs& a, const ColStatsOut& out, const ExecContext& ctx);

// Rows per partial of the CUDA column statistics, and the workspace they need (4 doubles per
// partial and column: mean, M2, min, max).
constexpr int64_t kPrepGpuChunkRows = 256;
inline int64_t col_stats_workspace(int64_t rows, int64_t cols) {
  return (rows + kPrepGpuChunkRows - 1) / kPrepGpuChunkRows * cols * 4;
}

// y = (x - shift[j]) * scale[j] + offset[j] per column (offset may be null), in float64. y: X's
// shape and dtype, any layout that is X itself or apart from it. fresh: y is a new array (CPU:
// ordinary stores into its pages, see the driver).
using AffineImpl = void (*)(const Matrix& x, const ArrayView& y, const double* shift, const double* scale,
                            const double* offset, bool fresh, const ExecContext& ctx);

// Rows of x divided by their norm (PrepNorm; a norm of 0 divides by 1) into y; norms[i] = norm of row i.
using NormalizeImpl = void (*)(const Matrix& x, const ArrayView& y, int norm, double* norms, bool fresh,
                               const ExecContext& ctx);

// Percentiles q[0..nq) (ascending, in [0, 100], NaN skipped as np.nanpercentile) of every column:
// out[k * cols + j]. Returns false when x holds an infinite value (nothing is guaranteed in out then).
using ColQuantilesImpl = bool (*)(const Matrix& x, const double* q, int nq, double* out, const ExecContext& ctx);

// Column means and the centred cross-product M = (X - mean)^T (X - mean), in float64 (mean: cols,
// m: cols x cols, C order). x: any strides. float64_products: float32 data with float64 products.
using CenteredGramImpl = void (*)(const ArrayView& x, bool float64_products, double* mean, double* m,
                                  const ExecContext& ctx);

}  // namespace nk

NK_DECLARE_DISPATCH(ColStatsImpl, col_stats_stub)
NK_DECLARE_DISPATCH(AffineImpl, prep_affine_stub)
NK_DECLARE_DISPATCH(NormalizeImpl, prep_normalize_stub)
NK_DECLARE_DISPATCH(ColQuantilesImpl, col_quantiles_stub)
NK_DECLARE_DISPATCH(CenteredGramImpl, centered_gram_stub)
