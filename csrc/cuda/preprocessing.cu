// CUDA preprocessing kernels: column statistics (per-chunk two-pass mean/M2, min/max, merged
// per column in chunk order with Chan's update: deterministic, no atomics), the fused per-column
// affine transform y = (x - a) * s + c in float64 arithmetic, and row normalisation (one warp per
// row, fixed shuffle-reduction order). CPU twin: csrc/cpu/preprocessing.cpp; reference:
// nnkernels.reference.preprocessing. Test: pytest -m gpu tests/test_preprocessing.py
#include <cuda_runtime.h>

#include "core/chan.hpp"
#include "cpu/preprocessing.hpp"
#include "cuda/common.cuh"
#include "drivers/preprocessing.hpp"

namespace nk {
namespace cuda {
namespace {

constexpr int64_t kChunkRows = kPrepGpuChunkRows;

struct Stat4 {
  double x, y, z, w;  // mean, M2, min, max
};

// partial[c][j] = (mean, M2, min, max) of rows [c*kChunkRows, ...) of column j. min/max skip NaN
// (they start from +-inf, as on the CPU); the moments do not.
// Columns in grid.y, looped with a stride (grid.y is capped at 65535: more than 8.4M columns need it).
template <class T>
__global__ void stats_partial(const T* __restrict__ x, int64_t rows, int64_t cols, Stat4* __restrict__ part) {
  const int64_t c = blockIdx.x;
  for (int64_t j = int64_t(blockIdx.y) * blockDim.x + threadIdx.x; j < cols; j += int64_t(gridDim.y) * blockDim.x) {
    const int64_t r0 = c * kChunkRows;
    const int64_t r1 = r0 + kChunkRows < rows ? r0 + kChunkRows : rows;
    double s = 0.0;
    for (int64_t i = r0; i < r1; ++i) s += double(x[i * cols + j]);
    const double n = double(r1 - r0);
    const double mu = s / n;
    double s1 = 0.0, s2 = 0.0, lo = INFINITY, hi = -INFINITY;
    for (int64_t i = r0; i < r1; ++i) {
      const double v = double(x[i * cols + j]);
      const double d = v - mu;
      s1 += d;
      s2 += d * d;
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
    double m2 = s2 - s1 * s1 / n;
    part[c * cols + j] = Stat4{mu + s1 / n, m2 > 0.0 ? m2 : 0.0, lo, hi};
  }
}

// Chunks merged per column in chunk order (Chan, Golub & LeVeque: core/chan.hpp); outputs that are null are not wanted.
__global__ void stats_merge(const Stat4* __restrict__ part, int64_t rows, int64_t cols, int64_t chunks,
                            double* __restrict__ mean, double* __restrict__ m2, double* __restrict__ mn,
                            double* __restrict__ mx) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  Stat4 acc = part[j];
  double na = double(rows < kChunkRows ? rows : kChunkRows);
  for (int64_t c = 1; c < chunks; ++c) {
    const Stat4 p = part[c * cols + j];
    const int64_t r1 = (c + 1) * kChunkRows < rows ? (c + 1) * kChunkRows : rows;
    chan_merge(na, acc.x, acc.y, double(r1 - c * kChunkRows), p.x, p.y);  // core/chan.hpp, as the CPU driver
    acc.z = p.z < acc.z ? p.z : acc.z;
    acc.w = p.w > acc.w ? p.w : acc.w;
  }
  if (acc.z > acc.w) acc.z = acc.w = NAN;  // no value in the column (all NaN)
  if (mean) mean[j] = acc.x;
  if (m2) m2[j] = acc.y;
  if (mn) mn[j] = acc.z;
  if (mx) mx[j] = acc.w;
}

template <class T>
__global__ void affine_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, int64_t cols,
                              const double* __restrict__ a, const double* __restrict__ s,
                              const double* __restrict__ c) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t j = i % cols;
    const double v = (double(x[i]) - a[j]) * s[j];
    y[i] = T(c ? v + c[j] : v);
  }
}

template <class T>
__global__ void normalize_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t rows, int64_t cols, int norm,
                                 double* __restrict__ norms) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = (int64_t(blockIdx.x) * blockDim.x + threadIdx.x) >> 5;
  const int64_t warps = (int64_t(gridDim.x) * blockDim.x) >> 5;
  for (int64_t r = warp; r < rows; r += warps) {
    const T* row = x + r * cols;
    double acc = 0.0, bad = 0.0;
    for (int64_t j = lane; j < cols; j += 32) {
      const double v = double(row[j]);
      bad += v - v;
      if (norm == kNormL2) acc += v * v;
      else if (norm == kNormL1) acc += fabs(v);
      else acc = fabs(v) > acc ? fabs(v) : acc;
    }
    for (int off = 16; off > 0; off >>= 1) {
      const double o = __shfl_xor_sync(0xffffffffu, acc, off);
      bad += __shfl_xor_sync(0xffffffffu, bad, off);
      acc = norm == kNormMax ? (o > acc ? o : acc) : acc + o;
    }
    const double nv = (norm == kNormL2 ? sqrt(acc) : acc) + bad;
    const double inv = 1.0 / (nv == 0.0 ? 1.0 : nv);
    if (lane == 0) norms[r] = nv;
    T* out = y + r * cols;
    for (int64_t j = lane; j < cols; j += 32) out[j] = T(double(row[j]) * inv);
  }
}

}  // namespace

// The stubs' CUDA implementations: C-contiguous device matrices, device parameters and outputs,
// workspace from the caller's library; kernels on ctx's stream. Nothing is copied to or from the
// host and nothing waits for the stream.
void col_stats_cuda(const Matrix& m, const ColStatsArgs& a, const ColStatsOut& out, const ExecContext& ctx) {
  const cudaStream_t s = as_stream(ctx.stream);
  const int64_t rows = m.rows, cols = m.cols;
  const int64_t chunks = (rows + kChunkRows - 1) / kChunkRows;
  Stat4* part = reinterpret_cast<Stat4*>(a.workspace);  // col_stats_workspace(rows, cols) doubles
  const int block = 128;
  const int64_t col_blocks = (cols + block - 1) / block;
  const dim3 grid(unsigned(chunks), unsigned(col_blocks < 65535 ? col_blocks : 65535));
  if (m.v.dtype == DType::f32)
    stats_partial<float><<<grid, block, 0, s>>>(m.v.ptr<const float>(), rows, cols, part);
  else
    stats_partial<double><<<grid, block, 0, s>>>(m.v.ptr<const double>(), rows, cols, part);
  stats_merge<<<unsigned(col_blocks), block, 0, s>>>(part, rows, cols, chunks, out.mean, out.m2, out.min, out.max);
  throw_if_error(cudaGetLastError(), "column statistics kernel launch");
}

void affine_cuda(const Matrix& m, const ArrayView& y, const double* a, const double* sc, const double* c, bool,
                 const ExecContext& ctx) {
  const cudaStream_t s = as_stream(ctx.stream);
  const int64_t n = m.rows * m.cols;
  const int block = 256;
  if (m.v.dtype == DType::f32)
    affine_kernel<float><<<grid_for(n, block, 4), block, 0, s>>>(m.v.ptr<const float>(), y.ptr<float>(), n, m.cols, a,
                                                                 sc, c);
  else
    affine_kernel<double><<<grid_for(n, block, 4), block, 0, s>>>(m.v.ptr<const double>(), y.ptr<double>(), n, m.cols,
                                                                  a, sc, c);
  throw_if_error(cudaGetLastError(), "affine kernel launch");
}

void normalize_cuda(const Matrix& m, const ArrayView& y, int norm, double* norms, bool, const ExecContext& ctx) {
  const cudaStream_t s = as_stream(ctx.stream);
  const int block = 256;
  const unsigned grid = grid_for(m.rows * 32, block);
  if (m.v.dtype == DType::f32)
    normalize_kernel<float><<<grid, block, 0, s>>>(m.v.ptr<const float>(), y.ptr<float>(), m.rows, m.cols, norm, norms);
  else
    normalize_kernel<double><<<grid, block, 0, s>>>(m.v.ptr<const double>(), y.ptr<double>(), m.rows, m.cols, norm,
                                                    norms);
  throw_if_error(cudaGetLastError(), "normalize kernel launch");
}

}  // namespace cuda
}  // namespace nk

NK_REGISTER_DISPATCH(col_stats_stub, cuda, &nk::cuda::col_stats_cuda);
NK_REGISTER_DISPATCH(prep_affine_stub, cuda, &nk::cuda::affine_cuda);
NK_REGISTER_DISPATCH(prep_normalize_stub, cuda, &nk::cuda::normalize_cuda);
