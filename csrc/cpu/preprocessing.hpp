// Data-preprocessing kernels (column statistics, quantile selection, fused per-column affine
// transforms, row normalisation): table of per-ISA kernels working on a block of rows of a
// 2-D matrix given with element strides (rs, cs); the host code (csrc/bindings/preprocessing.cpp)
// cuts the rows into fixed blocks and merges the per-block results in block order.
#pragma once
#include "core/common.hpp"
#include "core/isa_table.hpp"

namespace nk {

// kPrepIgnoreNan: NaN values are left out of the moments (per-column counts in `cnt`), as
// scikit-learn's scalers do; min/max always skip NaN (they start from +-inf).
enum PrepStatsFlags : int { kPrepMean = 1, kPrepMoments = 2, kPrepMinMax = 4, kPrepIgnoreNan = 8 };
enum PrepNorm : int { kNormL2 = 0, kNormL1 = 1, kNormMax = 2 };

struct PrepBlock {
  const void* x;      // first element of the block (row r0, column 0)
  int64_t rows, cols;
  int64_t rs, cs;     // element strides of x; either cs == 1 (C order) or rs == 1 (F order)
};

struct PrepKernels {
  // Per-column statistics of a block. mean: column means (kPrepMean / kPrepMoments);
  // m2: sums of squared deviations from the block mean, two-pass (kPrepMoments); mn/mx:
  // minima/maxima of the non-NaN values (+inf/-inf for a column without any) and bad: sum of
  // (x - x), NaN when a non-finite value occurs (kPrepMinMax).
  // With kPrepIgnoreNan or weights w (one per row of the block, or null): the moments are
  // weighted and skip NaN; cnt[j] receives the weight (count when w is null) of column j's
  // non-NaN values, and a column with cnt 0 gets mean 0 and m2 0. Without either, cnt is not
  // written (every column has b.rows values). scratch: `cols` doubles.
  void (*col_stats[2])(const PrepBlock& b, int flags, const double* w, double* cnt, double* mean, double* m2,
                       double* mn, double* mx, double* bad, double* scratch);
  // y = (x - a[j]) * s[j] + c[j] (c may be null), evaluated in float64, rounded to the dtype.
  // stream: non-temporal stores for C-order output with contiguous rows (outputs far above the caches).
  void (*affine[2])(const PrepBlock& b, void* y, int64_t yrs, int64_t ycs, const double* a, const double* s,
                    const double* c, bool stream);
  // Rows scaled by 1 / norm (norm 0 -> 1); norms[i] receives the norm of row i (before the fix).
  // scratch: `rows` doubles.
  void (*normalize[2])(const PrepBlock& b, void* y, int64_t yrs, int64_t ycs, int norm, double* norms,
                       double* scratch, bool stream);
  // Transposed copy of the non-NaN values of columns [0, b.cols) of the block into buf (column j
  // at buf + j * ld, in row order, counts[j] values); returns the sum of (x - x) over those
  // values: NaN iff one is infinite.
  double (*gather[2])(const PrepBlock& b, void* buf, int64_t ld, int64_t* counts);
  // Percentiles qs[0..nq) (ascending, in [0, 100]) of a[0..n) with NumPy's "linear" method, by
  // selection, never a full sort (a may be reordered). out[k] receives the k-th percentile.
  // scratch: nq * (cap + 1) elements of the dtype for the candidate buffers (nq <= 8, cap >= n for
  // the sampled path), or null (plain quickselect).
  void (*quantiles[2])(void* a, int64_t n, const double* qs, int nq, double* out, void* scratch, int64_t cap);
};

}  // namespace nk

NK_DECLARE_ISA_TABLE(PrepKernels, prep_kernels)

// ---- centred cross-product (covariance) kernel for PCA / ZCA on tall data ----------------
namespace nk {

// Rows of one chunk: the kernel centres each chunk on its own (corrected two-pass) mean,
// forms its cross-product in registers and merges it into the running result with Chan's
// update; also the span of one float32 accumulation (see csrc/cpu/preprocessing.cpp).
constexpr int64_t kGramChunkRows = 128;
// Columns are padded to a multiple of kGramPad in the packed chunk and the result (ld).
constexpr int64_t kGramPad = 16;

struct PrepGramKernels {
  // For rows [0, rows) of x (element strides rs, cs of any sign): mean[0..cols) = column means,
  // m2[i * ld + j] = sum_r (x_ri - mean_i)(x_rj - mean_j) for i <= j < cols (upper triangle; m2
  // holds ld * ld doubles, the rest is scratch). ld = cols rounded up to kGramPad. work: kGramChunkRows * ld
  // + 6 * ld doubles. Entry 0: float32 data, float32 products summed over one chunk (<= 128 rows)
  // then float64; 1: float64 data; 2: float32 data with float64 products.
  void (*centered_gram[3])(const void* x, int64_t rows, int64_t cols, int64_t rs, int64_t cs, double* mean,
                           double* m2, int64_t ld, double* work);
};

}  // namespace nk

NK_DECLARE_ISA_TABLE(PrepGramKernels, prep_gram_kernels)
