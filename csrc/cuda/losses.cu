// CUDA fused softmax cross-entropy (float32/float64): one block per row (grid-stride over rows),
// block reductions for the row max and the sum of exponentials, then a second single-block kernel that
// adds the per-row losses in a fixed tree order (deterministic, no float atomics).
// CPU twin: csrc/cpu/losses.cpp; reference: nnkernels.reference.losses.
// Test: pytest -m gpu tests/test_losses.py ; bench: python -m nnkernels bench --ops losses
#include <cuda_runtime.h>

#include <cfloat>

#include "cuda/common.cuh"
#include "cuda/losses.hpp"

namespace nk {
namespace cuda {
namespace {

constexpr int kBlock = 256;

template <class T> __device__ __forceinline__ T dev_exp(T x);
template <> __device__ __forceinline__ float dev_exp(float x) { return expf(x); }
template <> __device__ __forceinline__ double dev_exp(double x) { return exp(x); }

// Block-wide reduction in a fixed order (shared-memory tree): every thread gets the result.
template <class T, class Op>
__device__ T block_reduce(T v, T* shm, Op op) {
  shm[threadIdx.x] = v;
  __syncthreads();
  for (int w = kBlock / 2; w > 0; w >>= 1) {
    if (threadIdx.x < w) shm[threadIdx.x] = op(shm[threadIdx.x], shm[threadIdx.x + w]);
    __syncthreads();
  }
  T r = shm[0];
  __syncthreads();
  return r;
}

struct MaxOp {
  template <class T> __device__ T operator()(T a, T b) const { return (b > a || b != b) ? b : a; }  // NaN wins
};
struct AddOp {
  template <class T> __device__ T operator()(T a, T b) const { return a + b; }
};

// m = max x; s = sum exp(x - m); loss = m + log s - x[label]; d = exp(x - m)/s/n - onehot/n
template <class T>
__global__ void xent_rows(const T* __restrict__ x, const int64_t* __restrict__ labels, T* __restrict__ d, int64_t n,
                          int64_t c, double* __restrict__ row_loss) {
  __shared__ T shm[kBlock];
  const T inv_n = T(1.0 / double(n));
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const T* xr = x + r * c;
    T* dr = d + r * c;
    const int64_t label = labels[r];
    if (label < 0 || label >= c) {
      // Checked by the caller, but the labels live in device memory that other work may change
      // before this kernel runs: an out-of-range label gives a NaN row (loss and gradient),
      // never an access outside the row. The branch is uniform across the block (one row).
      for (int64_t j = threadIdx.x; j < c; j += kBlock) dr[j] = T(NAN);
      if (threadIdx.x == 0) row_loss[r] = double(NAN);
      continue;
    }
    const T xl = xr[label];
    T m = -T(INFINITY);
    for (int64_t j = threadIdx.x; j < c; j += kBlock) m = MaxOp()(m, xr[j]);
    m = block_reduce(m, shm, MaxOp());
    T s = T(0);
    for (int64_t j = threadIdx.x; j < c; j += kBlock) {
      T e = dev_exp<T>(xr[j] - m);
      dr[j] = e;
      s += e;
    }
    s = block_reduce(s, shm, AddOp());
    const T scale = inv_n / s;
    for (int64_t j = threadIdx.x; j < c; j += kBlock) dr[j] = dr[j] * scale - (j == label ? inv_n : T(0));
    if (threadIdx.x == 0) row_loss[r] = double(m) + log(double(s)) - double(xl);
  }
}

__global__ void mean_rows(const double* __restrict__ row_loss, int64_t n, double* __restrict__ loss) {
  __shared__ double shm[kBlock];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < n; i += kBlock) acc += row_loss[i];
  acc = block_reduce(acc, shm, AddOp());
  if (threadIdx.x == 0) *loss = acc / double(n);
}

template <class T>
void launch_typed(const T* x, const int64_t* labels, T* d, int64_t n, int64_t c, double* row_loss, double* loss,
                  cudaStream_t s) {
  const unsigned grid = unsigned(n < 65535 * 16 ? n : 65535 * 16);
  xent_rows<T><<<grid, kBlock, 0, s>>>(x, labels, d, n, c, row_loss);
  mean_rows<<<1, kBlock, 0, s>>>(row_loss, n, loss);
}

}  // namespace

void launch_softmax_xent(int dtype, uintptr_t logits, uintptr_t labels, uintptr_t dlogits, int64_t n, int64_t c,
                         uintptr_t row_loss, uintptr_t loss, uintptr_t stream) {
  if (n <= 0 || c <= 0) return;
  const int64_t* lab = reinterpret_cast<const int64_t*>(labels);
  double* rl = reinterpret_cast<double*>(row_loss);
  double* l = reinterpret_cast<double*>(loss);
  if (dtype == 0)
    launch_typed<float>(reinterpret_cast<const float*>(logits), lab, reinterpret_cast<float*>(dlogits), n, c, rl, l,
                        as_stream(stream));
  else
    launch_typed<double>(reinterpret_cast<const double*>(logits), lab, reinterpret_cast<double*>(dlogits), n, c, rl, l,
                         as_stream(stream));
  throw_if_error(cudaGetLastError(), "softmax cross-entropy kernel launch");
}

}  // namespace cuda
}  // namespace nk
