// CUDA fused softmax cross-entropy (float32/float64; float16/bfloat16 logits in float32 arithmetic,
// dlogits rounded once to the logits' dtype, as the CPU kernels): one block per row (grid-stride over rows),
// block reductions for the row max and the sum of exponentials, then a second single-block kernel that
// adds the per-row losses in a fixed tree order (deterministic, no float atomics).
// CPU twin: csrc/cpu/losses.cpp; reference: nnkernels.reference.losses.
// Test: pytest -m gpu tests/test_losses.py ; bench: python -m nnkernels bench --ops losses
#include <cuda_runtime.h>

#include <cfloat>

#include "cuda/common.cuh"
#include "drivers/losses.hpp"

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
      // Device labels are not range-checked by the host (that would copy them to the host and
      // wait for the stream): an out-of-range label gives a NaN row (loss and gradient), never an
      // access outside the row. The branch is uniform across the block (one row).
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

// 16-bit logits S (float32 arithmetic, C = float): the exponentials are not kept in d between the
// passes (16-bit storage would round them before the scaling); the last pass recomputes them from
// x and writes each d_j = e_j * (inv_n / s) - (j == label) * inv_n with one rounding to S, the
// scale and the one-hot term in the CPU kernel's operations (csrc/cpu/losses.cpp, xent_row_16).
// In place (d == x) is safe: a thread reads x_j before it writes d_j, and every read of the
// earlier passes precedes the block reduction's barrier.
template <class S>
__global__ void xent_rows_16(const S* x, const int64_t* __restrict__ labels, S* d, int64_t n, int64_t c,
                             double* __restrict__ row_loss) {  // x and d may be one array: not __restrict__
  using St = DevStorage<S>;
  __shared__ float shm[kBlock];
  const double inv_n_d = 1.0 / double(n);
  for (int64_t r = blockIdx.x; r < n; r += gridDim.x) {
    const S* xr = x + r * c;
    S* dr = d + r * c;
    const int64_t label = labels[r];
    if (label < 0 || label >= c) {  // as xent_rows: a NaN row, never an access outside it
      for (int64_t j = threadIdx.x; j < c; j += kBlock) dr[j] = St::store(NAN);
      if (threadIdx.x == 0) row_loss[r] = double(NAN);
      continue;
    }
    const float xl = St::load(xr[label]);
    float m = -INFINITY;
    for (int64_t j = threadIdx.x; j < c; j += kBlock) m = MaxOp()(m, St::load(xr[j]));
    m = block_reduce(m, shm, MaxOp());
    float s = 0.0f;
    for (int64_t j = threadIdx.x; j < c; j += kBlock) s = __fadd_rn(s, expf(__fsub_rn(St::load(xr[j]), m)));
    s = block_reduce(s, shm, AddOp());
    const float scale = float(inv_n_d / double(s)), hot = float(inv_n_d);
    for (int64_t j = threadIdx.x; j < c; j += kBlock) {
      const float v = __fmul_rn(expf(__fsub_rn(St::load(xr[j]), m)), scale);
      dr[j] = St::store(j == label ? __fsub_rn(v, hot) : v);
    }
    if (threadIdx.x == 0) row_loss[r] = double(m) + log(double(s)) - double(xl);
  }
}

template <class S>
void launch_16bit(const S* x, const int64_t* labels, S* d, int64_t n, int64_t c, double* row_loss, double* loss,
                  cudaStream_t s) {
  if (n > 0) {
    const unsigned grid = unsigned(n < 65535 * 16 ? n : 65535 * 16);
    xent_rows_16<S><<<grid, kBlock, 0, s>>>(x, labels, d, n, c, row_loss);
  }
  mean_rows<<<1, kBlock, 0, s>>>(row_loss, n, loss);
}

template <class T>
void launch_typed(const T* x, const int64_t* labels, T* d, int64_t n, int64_t c, double* row_loss, double* loss,
                  cudaStream_t s) {
  if (n > 0) {
    const unsigned grid = unsigned(n < 65535 * 16 ? n : 65535 * 16);
    xent_rows<T><<<grid, kBlock, 0, s>>>(x, labels, d, n, c, row_loss);
  }
  mean_rows<<<1, kBlock, 0, s>>>(row_loss, n, loss);  // n = 0: 0 / 0, NaN as on the CPU
}

}  // namespace

// The softmax_xent_stub's CUDA implementation: C-contiguous logits/dlogits, device labels, loss
// and row_loss (max(n, 1) doubles), all on ctx's stream: nothing is copied to the host, nothing waits.
void softmax_xent_cuda(const ArrayView& x, const int64_t* labels, const ArrayView& d, double* loss, double* row_loss,
                       const ExecContext& ctx) {
  const int64_t n = x.shape[0], c = x.shape[1];
  const cudaStream_t s = as_stream(ctx.stream);
  switch (x.dtype) {
    case DType::f32: launch_typed<float>(x.ptr<const float>(), labels, d.ptr<float>(), n, c, row_loss, loss, s); break;
    case DType::f64: launch_typed<double>(x.ptr<const double>(), labels, d.ptr<double>(), n, c, row_loss, loss, s); break;
    case DType::f16: launch_16bit<__half>(x.ptr<const __half>(), labels, d.ptr<__half>(), n, c, row_loss, loss, s); break;
    case DType::bf16:
      launch_16bit<__nv_bfloat16>(x.ptr<const __nv_bfloat16>(), labels, d.ptr<__nv_bfloat16>(), n, c, row_loss, loss, s);
      break;
  }
  throw_if_error(cudaGetLastError(), "softmax cross-entropy kernel launch");
}

}  // namespace cuda
}  // namespace nk

NK_REGISTER_DISPATCH(softmax_xent_stub, cuda, &nk::cuda::softmax_xent_cuda);
