// CUDA activation kernels, forward and backward (float32/float64; float16/bfloat16 storage computed
// in float32, rounded to nearest even as the CPU kernels: DevStorage in cuda/common.cuh).
// CPU twin and reference: csrc/cpu/activations.cpp, nnkernels.reference.activations.
// Memory-bound: a grid-stride loop with 16-byte vector loads where the pointers allow.
// Test: pytest -m gpu tests/test_activations.py ; bench: python -m nnkernels bench --ops relu
#include <cuda_runtime.h>

#include "cpu/activations.hpp"
#include "drivers/activations.hpp"
#include "cuda/common.cuh"

namespace nk {
namespace cuda {
namespace {

template <class T> __device__ __forceinline__ T dev_exp(T x);
template <> __device__ __forceinline__ float dev_exp(float x) { return expf(x); }
template <> __device__ __forceinline__ double dev_exp(double x) { return exp(x); }
template <class T> __device__ __forceinline__ T dev_tanh(T x);
template <> __device__ __forceinline__ float dev_tanh(float x) { return tanhf(x); }
template <> __device__ __forceinline__ double dev_tanh(double x) { return tanh(x); }

template <class T> struct Op {
  int op;
  T slope;
  __device__ __forceinline__ T operator()(T a, T b) const {
    switch (op) {
      case kRelu: return a < T(0) ? T(0) : a;
      case kReluBackward: return b > T(0) ? a : T(0);
      case kLeakyRelu: return a > T(0) ? a : a * slope;
      case kLeakyReluBackward: return b > T(0) ? a : a * slope;
      case kSigmoid: {  // e = exp(-|x|) <= 1: no overflow for any x
        T e = dev_exp<T>(-fabs(a));
        T pos = T(1) / (T(1) + e);
        return a >= T(0) ? pos : e * pos;
      }
      case kSigmoidBackward: return a * b * (T(1) - b);
      case kTanh: return dev_tanh<T>(a);
      case kTanhBackward: return a * (T(1) - b * b);
    }
    return a;
  }
};

// S: the storage type; C: the compute type (float for the 16-bit types).
template <class S, int OP>
__global__ void elementwise_kernel(const S* __restrict__ a, const S* __restrict__ b, S* __restrict__ y, int64_t n,
                                   typename DevStorage<S>::C slope) {
  using St = DevStorage<S>;
  using C = typename St::C;
  const Op<C> f{OP, slope};
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride) {
    y[i] = St::store(f(St::load(a[i]), b ? St::load(b[i]) : C(0)));
  }
}

// 16 bytes per thread per step (4 floats, 2 doubles, 8 halves): 16-byte transactions.
template <class S, int OP>
__global__ void elementwise_vec_kernel(const S* __restrict__ a, const S* __restrict__ b, S* __restrict__ y,
                                       int64_t n_vec, typename DevStorage<S>::C slope) {
  using St = DevStorage<S>;
  using C = typename St::C;
  constexpr int L = 16 / sizeof(S);
  const Op<C> f{OP, slope};
  const uint4* av = reinterpret_cast<const uint4*>(a);
  const uint4* bv = reinterpret_cast<const uint4*>(b);
  uint4* yv = reinterpret_cast<uint4*>(y);
  const int64_t stride = int64_t(blockDim.x) * gridDim.x;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n_vec; i += stride) {
    uint4 va = av[i];
    uint4 vb = b ? bv[i] : uint4{0, 0, 0, 0};
    S* pa = reinterpret_cast<S*>(&va);
    const S* pb = reinterpret_cast<const S*>(&vb);
#pragma unroll
    for (int k = 0; k < L; ++k) pa[k] = St::store(f(St::load(pa[k]), St::load(pb[k])));
    yv[i] = va;
  }
}

template <class S, int OP>
void launch_typed(const S* a, const S* b, S* y, int64_t n, typename DevStorage<S>::C slope, cudaStream_t stream) {
  constexpr int block = 256;
  constexpr int L = 16 / sizeof(S);
  const bool aligned = (reinterpret_cast<uintptr_t>(a) % 16 == 0) && (reinterpret_cast<uintptr_t>(y) % 16 == 0) &&
                       (b == nullptr || reinterpret_cast<uintptr_t>(b) % 16 == 0);
  int64_t done = 0;
  if (aligned && n >= L) {
    const int64_t n_vec = n / L;
    elementwise_vec_kernel<S, OP><<<grid_for(n_vec, block, 4), block, 0, stream>>>(a, b, y, n_vec, slope);
    done = n_vec * L;
  }
  if (done < n) {
    elementwise_kernel<S, OP><<<grid_for(n - done, block), block, 0, stream>>>(a + done, b ? b + done : nullptr,
                                                                                y + done, n - done, slope);
  }
}

template <class T>
void launch_op(int op, const uintptr_t* ins, int n_in, uintptr_t out, int64_t n, double slope, cudaStream_t s) {
  const T* a = reinterpret_cast<const T*>(ins[0]);
  const T* b = n_in > 1 ? reinterpret_cast<const T*>(ins[1]) : nullptr;
  T* y = reinterpret_cast<T*>(out);
  const typename DevStorage<T>::C sl = typename DevStorage<T>::C(slope);
  switch (op) {
    case kRelu: launch_typed<T, kRelu>(a, b, y, n, sl, s); break;
    case kReluBackward: launch_typed<T, kReluBackward>(a, b, y, n, sl, s); break;
    case kLeakyRelu: launch_typed<T, kLeakyRelu>(a, b, y, n, sl, s); break;
    case kLeakyReluBackward: launch_typed<T, kLeakyReluBackward>(a, b, y, n, sl, s); break;
    case kSigmoid: launch_typed<T, kSigmoid>(a, b, y, n, sl, s); break;
    case kSigmoidBackward: launch_typed<T, kSigmoidBackward>(a, b, y, n, sl, s); break;
    case kTanh: launch_typed<T, kTanh>(a, b, y, n, sl, s); break;
    case kTanhBackward: launch_typed<T, kTanhBackward>(a, b, y, n, sl, s); break;
  }
}

}  // namespace

// The activation_stub's CUDA implementation: contiguous operands of one dtype, on ctx's stream.
void activation_cuda(ActivationOp op, const ArrayView* ins, int n_in, const ArrayView& out, const ActivationParams& p,
                     const ExecContext& ctx) {
  const int64_t n = out.size;
  if (n <= 0) return;
  uintptr_t ptrs[2] = {reinterpret_cast<uintptr_t>(ins[0].data), n_in > 1 ? reinterpret_cast<uintptr_t>(ins[1].data) : 0};
  const uintptr_t y = reinterpret_cast<uintptr_t>(out.data);
  const cudaStream_t s = as_stream(ctx.stream);
  switch (out.dtype) {
    case DType::f32: launch_op<float>(op, ptrs, n_in, y, n, p.negative_slope, s); break;
    case DType::f64: launch_op<double>(op, ptrs, n_in, y, n, p.negative_slope, s); break;
    case DType::f16: launch_op<__half>(op, ptrs, n_in, y, n, p.negative_slope, s); break;
    case DType::bf16: launch_op<__nv_bfloat16>(op, ptrs, n_in, y, n, p.negative_slope, s); break;
  }
  throw_if_error(cudaGetLastError(), "activation kernel launch");
}

}  // namespace cuda
}  // namespace nk

NK_REGISTER_DISPATCH(activation_stub, cuda, &nk::cuda::activation_cuda);
