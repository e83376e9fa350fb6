// CUDA preprocessing kernels: column statistics (per-chunk two-pass mean/M2, min/max, merged
// per column in chunk order with Chan's update: deterministic, no atomics), the fused per-column
// affine transform y = (x - a) * s + c in float64 arithmetic, and row normalisation (one warp per
// row, fixed shuffle-reduction order). CPU twin: csrc/cpu/preprocessing.cpp; reference:
// nnkernels.reference.preprocessing. Test: pytest -m gpu tests/test_preprocessing.py
#include <cuda_runtime.h>

#include <vector>

#include "cpu/preprocessing.hpp"
#include "cuda/common.cuh"
#include "cuda/preprocessing.hpp"

namespace nk {
namespace cuda {
namespace {

constexpr int64_t kChunkRows = 256;

struct Stat4 {
  double x, y, z, w;  // mean, M2, min, max
};

struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t bytes) { throw_if_error(cudaMalloc(&p, bytes ? bytes : 1), "cudaMalloc"); }
  ~DeviceBuffer() { cudaFree(p); }
  template <class T> T* as() const { return static_cast<T*>(p); }
};

// partial[c][j] = (mean, M2, min, max) of rows [c*kChunkRows, ...) of column j
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
    double s1 = 0.0, s2 = 0.0, lo = double(x[r0 * cols + j]), hi = lo;
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

__global__ void stats_merge(const Stat4* __restrict__ part, int64_t rows, int64_t cols, int64_t chunks,
                            Stat4* __restrict__ out) {
  const int64_t j = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  Stat4 acc = part[j];
  double na = double(rows < kChunkRows ? rows : kChunkRows);
  for (int64_t c = 1; c < chunks; ++c) {
    const Stat4 p = part[c * cols + j];
    const int64_t r1 = (c + 1) * kChunkRows < rows ? (c + 1) * kChunkRows : rows;
    const double nb = double(r1 - c * kChunkRows);
    const double n = na + nb;
    const double d = p.x - acc.x;
    acc.x = acc.x + d * (nb / n);
    acc.y = acc.y + p.y + d * d * (na * nb / n);
    acc.z = p.z < acc.z ? p.z : acc.z;
    acc.w = p.w > acc.w ? p.w : acc.w;
    na = n;
  }
  out[j] = acc;
}

template <class T>
__global__ void affine_kernel(const T* __restrict__ x, T* __restrict__ y, int64_t n, int64_t cols,
                              const double* __restrict__ a, const double* __restrict__ s,
                              const double* __restrict__ c) {
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    const int64_t j = i % cols;
    y[i] = T((double(x[i]) - a[j]) * s[j] + c[j]);
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

void col_stats(uintptr_t x, int64_t rows, int64_t cols, int dtype, double* mean, double* m2, double* mn, double* mx,
               uintptr_t stream) {
  cudaStream_t s = as_stream(stream);
  const int64_t chunks = (rows + kChunkRows - 1) / kChunkRows;
  DeviceBuffer part(size_t(chunks * cols) * sizeof(Stat4)), out(size_t(cols) * sizeof(Stat4));
  const int block = 128;
  const int64_t col_blocks = (cols + block - 1) / block;
  const dim3 grid(unsigned(chunks), unsigned(col_blocks < 65535 ? col_blocks : 65535));
  if (dtype == 0)
    stats_partial<float><<<grid, block, 0, s>>>(reinterpret_cast<const float*>(x), rows, cols, part.as<Stat4>());
  else
    stats_partial<double><<<grid, block, 0, s>>>(reinterpret_cast<const double*>(x), rows, cols, part.as<Stat4>());
  stats_merge<<<unsigned((cols + block - 1) / block), block, 0, s>>>(part.as<Stat4>(), rows, cols, chunks,
                                                                     out.as<Stat4>());
  throw_if_error(cudaGetLastError(), "column statistics kernel launch");
  std::vector<Stat4> host(static_cast<size_t>(cols));
  throw_if_error(cudaMemcpyAsync(host.data(), out.p, size_t(cols) * sizeof(Stat4), cudaMemcpyDeviceToHost, s),
                 "column statistics copy");
  throw_if_error(cudaStreamSynchronize(s), "column statistics");
  for (int64_t j = 0; j < cols; ++j) {
    mean[j] = host[size_t(j)].x;
    m2[j] = host[size_t(j)].y;
    mn[j] = host[size_t(j)].z;
    mx[j] = host[size_t(j)].w;
  }
}

void affine(uintptr_t x, uintptr_t y, int64_t rows, int64_t cols, int dtype, const double* a, const double* sc,
            const double* c, uintptr_t stream) {
  cudaStream_t s = as_stream(stream);
  DeviceBuffer p(size_t(3 * cols) * sizeof(double));
  double* d = p.as<double>();
  throw_if_error(cudaMemcpyAsync(d, a, size_t(cols) * sizeof(double), cudaMemcpyHostToDevice, s), "affine params");
  throw_if_error(cudaMemcpyAsync(d + cols, sc, size_t(cols) * sizeof(double), cudaMemcpyHostToDevice, s), "affine params");
  throw_if_error(cudaMemcpyAsync(d + 2 * cols, c, size_t(cols) * sizeof(double), cudaMemcpyHostToDevice, s),
                 "affine params");
  const int64_t n = rows * cols;
  const int block = 256;
  if (dtype == 0)
    affine_kernel<float><<<grid_for(n, block, 4), block, 0, s>>>(reinterpret_cast<const float*>(x),
                                                                 reinterpret_cast<float*>(y), n, cols, d, d + cols,
                                                                 d + 2 * cols);
  else
    affine_kernel<double><<<grid_for(n, block, 4), block, 0, s>>>(reinterpret_cast<const double*>(x),
                                                                  reinterpret_cast<double*>(y), n, cols, d, d + cols,
                                                                  d + 2 * cols);
  throw_if_error(cudaGetLastError(), "affine kernel launch");
  // the parameter buffer is freed when this function returns: wait for the kernel
  throw_if_error(cudaStreamSynchronize(s), "affine kernel");
}

void normalize(uintptr_t x, uintptr_t y, int64_t rows, int64_t cols, int dtype, int norm, double* norms,
               uintptr_t stream) {
  cudaStream_t s = as_stream(stream);
  DeviceBuffer dn(size_t(rows) * sizeof(double));
  const int block = 256;
  const unsigned grid = grid_for(rows * 32, block);
  if (dtype == 0)
    normalize_kernel<float><<<grid, block, 0, s>>>(reinterpret_cast<const float*>(x), reinterpret_cast<float*>(y),
                                                   rows, cols, norm, dn.as<double>());
  else
    normalize_kernel<double><<<grid, block, 0, s>>>(reinterpret_cast<const double*>(x), reinterpret_cast<double*>(y),
                                                    rows, cols, norm, dn.as<double>());
  throw_if_error(cudaGetLastError(), "normalize kernel launch");
  throw_if_error(cudaMemcpyAsync(norms, dn.p, size_t(rows) * sizeof(double), cudaMemcpyDeviceToHost, s), "norms copy");
  throw_if_error(cudaStreamSynchronize(s), "normalize kernel");
}

}  // namespace cuda
}  // namespace nk
