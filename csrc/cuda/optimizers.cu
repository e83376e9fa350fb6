// CUDA optimizer kernels: multi-tensor apply of SGD / Adagrad / RMSprop / Adam(W) (AMSGrad) / EMA and
// clip_grad_norm, registered on the stubs of drivers/optimizers.hpp. CPU twin and reference:
// drivers/optimizers.cpp + cpu/optimizers.cpp, nnkernels.reference.optimizers.
// Multi-tensor apply after PyTorch's multi_tensor_apply (aten/src/ATen/native/cuda/MultiTensorApply.cuh,
// itself after NVIDIA apex): every tensor is cut into chunks of kOptimChunk elements, one thread
// block per chunk, kIlp elements per thread per iteration. The launch's table of tensor pointers,
// sizes and (block -> tensor, chunk) entries is a kernel argument passed by value (LaunchTable,
// like PyTorch's TensorListMetadata: it fits the 4 KB of kernel parameters), so a call makes no
// allocation and no host->device copy; a list too long for one table takes several launches, a
// tensor cut by a table boundary continuing in the next table.
// clip_grad_norm: one float64 partial sum per chunk (fixed-shape tree reduction in the block),
// then one block combines the partials in order (deterministic, no atomics) into the norm (a
// 0-d device array) and the clip coefficient, which the scaling launch reads on the device:
// no copy to the host, no synchronisation (the ops can be captured in a CUDA graph).
// Test: pytest -m gpu tests/test_optimizers.py ; bench: python -m nnkernels bench --ops optimizers
#include <cuda_runtime.h>

#include "cuda/common.cuh"
#include "drivers/optimizers.hpp"

namespace nk {
namespace cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kIlp = 4;
constexpr int64_t kChunk = kOptimChunk;
static_assert(kChunk % (int64_t(kBlock) * kIlp) == 0, "a chunk is whole iterations of a block");

// Tensors and blocks of one launch (PyTorch's depth_to_max_tensors / depth_to_max_blocks: the
// table plus the update's scalars stay under the 4 KB kernel-parameter limit for every depth).
template <int NOPS> struct LaunchTable {
  static constexpr int kTensors = NOPS == 1 ? 110 : NOPS == 2 ? 64 : NOPS == 3 ? 48 : 36;
  static constexpr int kBlocks = 320;
  void* ptr[NOPS][kTensors];
  int64_t n[kTensors];
  int64_t partial_base;              // clip_grad_norm: partial-sum index of this launch's block 0
  int32_t block_chunk[kBlocks];      // chunk of the tensor, in units of kChunk
  uint8_t block_tensor[kBlocks];     // entry of ptr / n
};
static_assert(LaunchTable<1>::kTensors < 256, "block_tensor entries are 8 bits");

template <class T> __device__ __forceinline__ T dsqrt(T x);
template <> __device__ __forceinline__ float dsqrt(float x) { return sqrtf(x); }
template <> __device__ __forceinline__ double dsqrt(double x) { return sqrt(x); }

// Scalar math identical to the CPU kernels (see csrc/cpu/optimizers.cpp for the formulas).
template <class T, int OP>
struct Update {
  T lr, wd, mu, omd, alpha, oma, eps, omb1, b2, omb2, step_size, ibc2, shrink, dec, omdec, gsign;
  int nesterov, in_sqrt, decoupled;
  explicit Update(const OptimHyper& h)
      : lr(T(h.lr)), wd(T(h.weight_decay)), mu(T(h.momentum)), omd(T(1.0 - h.dampening)), alpha(T(h.alpha)),
        oma(T(1.0 - h.alpha)), eps(T(h.eps)), omb1(T(1.0 - h.beta1)), b2(T(h.beta2)), omb2(T(1.0 - h.beta2)),
        step_size(T(h.step_size)), ibc2(T(h.inv_bc2_sqrt)), shrink(T(1.0 - h.lr * h.weight_decay)),
        dec(T(h.decay)), omdec(T(1.0 - h.decay)), gsign(h.maximize ? T(-1) : T(1)), nesterov(h.nesterov),
        in_sqrt(h.eps_in_sqrt),
        decoupled(h.decoupled) {}

  __device__ __forceinline__ void operator()(T* const* p, int64_t i) const {
    if (OP == kEma) {
      p[0][i] = dec * p[0][i] + omdec * p[1][i];
      return;
    }
    T x = p[0][i];
    T d = gsign * p[1][i];  // maximize: the gradient's sign flipped (exact)
    if ((OP == kAdam || OP == kAdamAmsgrad) && decoupled) {
      if (wd != T(0)) x = x * shrink;
    } else if (wd != T(0)) {
      d = d + wd * x;
    }
    if (OP == kSgd) {
      x = x - lr * d;
    } else if (OP == kSgdMomentum) {
      T b = mu * p[2][i] + omd * d;
      p[2][i] = b;
      x = x - lr * (nesterov ? d + mu * b : b);
    } else if (OP == kAdagrad) {
      T s = p[2][i] + d * d;
      p[2][i] = s;
      x = x - lr * (d / (dsqrt(s) + eps));
    } else if (OP == kRmsprop) {
      T v = alpha * p[2][i] + oma * (d * d);
      p[2][i] = v;
      const T den = in_sqrt ? dsqrt(v + eps) : dsqrt(v) + eps;
      x = x - lr * (d / den);
    } else if (OP == kAdam || OP == kAdamAmsgrad) {
      T m = p[2][i];
      m = m + omb1 * (d - m);
      T v = b2 * p[3][i] + omb2 * (d * d);
      p[2][i] = m;
      p[3][i] = v;
      if (OP == kAdamAmsgrad) {  // vmax = max(vmax, v), NaN propagating (torch.maximum)
        const T old = p[4][i];
        v = (v > old || v != v) ? v : old;
        p[4][i] = v;
      }
      x = x - step_size * (m / (dsqrt(v) * ibc2 + eps));
    }
    p[0][i] = x;
  }
};
static_assert(sizeof(LaunchTable<5>) + sizeof(Update<double, kAdam>) <= 4000, "kernel parameters over 4 KB");
static_assert(sizeof(LaunchTable<4>) + sizeof(Update<double, kAdam>) <= 4000, "kernel parameters over 4 KB");
static_assert(sizeof(LaunchTable<3>) + sizeof(Update<double, kAdam>) <= 4000, "kernel parameters over 4 KB");
static_assert(sizeof(LaunchTable<2>) + sizeof(Update<double, kAdam>) <= 4000, "kernel parameters over 4 KB");
static_assert(sizeof(LaunchTable<1>) + 3 * sizeof(double*) <= 4000, "kernel parameters over 4 KB");

// This block's tensor entry and element range [begin, end).
template <int NOPS>
__device__ __forceinline__ int block_range(const LaunchTable<NOPS>& tab, int64_t& begin, int64_t& end) {
  const int e = tab.block_tensor[blockIdx.x];
  begin = int64_t(tab.block_chunk[blockIdx.x]) * kChunk;
  end = begin + kChunk < tab.n[e] ? begin + kChunk : tab.n[e];
  return e;
}

template <class T, int OP, int NOPS>
__global__ void __launch_bounds__(kBlock) multi_tensor_kernel(const LaunchTable<NOPS> tab, const Update<T, OP> f) {
  int64_t begin, end;
  const int e = block_range(tab, begin, end);
  T* p[kOptimMaxOperands] = {};  // full size: Update's branches for other ops index up to 4 (dead code)
#pragma unroll
  for (int k = 0; k < NOPS; ++k) p[k] = static_cast<T*>(tab.ptr[k][e]);
  for (int64_t base = begin + threadIdx.x; base < end; base += int64_t(kBlock) * kIlp) {
#pragma unroll
    for (int u = 0; u < kIlp; ++u) {
      const int64_t i = base + int64_t(u) * kBlock;
      if (i < end) f(p, i);
    }
  }
}

// Block tree reduction of float64 values in a fixed shape (deterministic).
__device__ __forceinline__ double block_sum(double v, double* sh) {
  sh[threadIdx.x] = v;
  __syncthreads();
  for (int s = kBlock / 2; s > 0; s >>= 1) {
    if (int(threadIdx.x) < s) sh[threadIdx.x] += sh[threadIdx.x + s];
    __syncthreads();
  }
  return sh[0];
}

template <class T>
__global__ void __launch_bounds__(kBlock) sumsq_kernel(const LaunchTable<1> tab, double* __restrict__ partial) {
  __shared__ double sh[kBlock];
  int64_t begin, end;
  const T* g = static_cast<const T*>(tab.ptr[0][block_range(tab, begin, end)]);
  double acc = 0.0;
  for (int64_t i = begin + threadIdx.x; i < end; i += kBlock) {
    const double x = double(g[i]);
    acc += x * x;
  }
  const double s = block_sum(acc, sh);
  if (threadIdx.x == 0) partial[tab.partial_base + blockIdx.x] = s;
}

// One block: total = sum of the partials (fixed order), the norm, and the scaling coefficient
// (torch.nn.utils.clip_grad_norm_: max_norm / (norm + 1e-6) when norm > max_norm or NaN).
__global__ void __launch_bounds__(kBlock) finish_norm_kernel(const double* __restrict__ partial, int64_t nchunks,
                                                             double max_norm, double* __restrict__ norm_out,
                                                             double* __restrict__ coef /* [coef, apply] */) {
  __shared__ double sh[kBlock];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < nchunks; i += kBlock) acc += partial[i];
  const double s = block_sum(acc, sh);
  if (threadIdx.x == 0) {
    const double norm = sqrt(s);
    const bool apply = norm > max_norm || isnan(norm);
    *norm_out = norm;
    coef[0] = apply ? max_norm / (norm + 1e-6) : 1.0;
    coef[1] = apply ? 1.0 : 0.0;
  }
}

template <class T>
__global__ void __launch_bounds__(kBlock) scale_kernel(const LaunchTable<1> tab, const double* __restrict__ coef) {
  if (coef[1] == 0.0) return;
  const T c = T(coef[0]);
  int64_t begin, end;
  T* g = static_cast<T*>(tab.ptr[0][block_range(tab, begin, end)]);
  for (int64_t base = begin + threadIdx.x; base < end; base += int64_t(kBlock) * kIlp) {
#pragma unroll
    for (int u = 0; u < kIlp; ++u) {
      const int64_t i = base + int64_t(u) * kBlock;
      if (i < end) g[i] = g[i] * c;
    }
  }
}

// Fills launch tables with every chunk of the non-empty tensors of dtype `dt`, in list order,
// and calls launch(table, blocks) for each full table and the last one. `blocks_done` counts the
// blocks of all launches so far (the partial-sum index of the next one).
template <int NOPS, class Launch>
void for_each_launch(const TensorList& list, DType dt, int64_t& blocks_done, Launch&& launch) {
  using Table = LaunchTable<NOPS>;
  Table tab;
  int tensors = 0, blocks = 0;
  auto flush = [&] {
    tab.partial_base = blocks_done;
    launch(tab, blocks);
    blocks_done += blocks;
    tensors = blocks = 0;
  };
  for (int64_t t = 0; t < list.count(); ++t) {
    const int64_t n = list.size[size_t(t)];
    if (n == 0 || list.dtype[size_t(t)] != dt) continue;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    int64_t c = 0;
    while (c < chunks) {
      if (tensors == Table::kTensors) flush();
      const int e = tensors++;
      for (int k = 0; k < NOPS; ++k) tab.ptr[k][e] = list.at(t, k);
      tab.n[e] = n;
      for (; c < chunks && blocks < Table::kBlocks; ++c, ++blocks) {
        tab.block_tensor[blocks] = uint8_t(e);
        tab.block_chunk[blocks] = int32_t(c);
      }
      if (blocks == Table::kBlocks) flush();  // the rest of tensor t (if any) starts the next table
    }
  }
  if (blocks > 0) flush();
}

template <class T, int OP, int NOPS>
void step_typed(const TensorList& list, DType dt, const OptimHyper& h, cudaStream_t s) {
  const Update<T, OP> f(h);
  int64_t blocks_done = 0;
  for_each_launch<NOPS>(list, dt, blocks_done, [&](const LaunchTable<NOPS>& tab, int blocks) {
    multi_tensor_kernel<T, OP, NOPS><<<unsigned(blocks), kBlock, 0, s>>>(tab, f);
  });
}

template <int OP, int NOPS>
void step_op(const TensorList& list, const OptimHyper& h, cudaStream_t s) {
  if (list.nops != NOPS) throw std::logic_error("optimizer step: wrong operand count");
  step_typed<float, OP, NOPS>(list, DType::f32, h, s);
  step_typed<double, OP, NOPS>(list, DType::f64, h, s);
}

// The optim_step_stub's CUDA implementation: C-contiguous tensors on ctx's device, on ctx's stream.
void optim_step_cuda(OptimOp op, const TensorList& list, const OptimHyper& h, const ExecContext& ctx) {
  const cudaStream_t s = as_stream(ctx.stream);
  switch (op) {
    case kSgd: step_op<kSgd, 2>(list, h, s); break;
    case kSgdMomentum: step_op<kSgdMomentum, 3>(list, h, s); break;
    case kAdagrad: step_op<kAdagrad, 3>(list, h, s); break;
    case kRmsprop: step_op<kRmsprop, 3>(list, h, s); break;
    case kAdam: step_op<kAdam, 4>(list, h, s); break;
    case kAdamAmsgrad: step_op<kAdamAmsgrad, 5>(list, h, s); break;
    case kEma: step_op<kEma, 2>(list, h, s); break;
    default: throw std::logic_error("optimizer step: unknown op");
  }
  throw_if_error(cudaGetLastError(), "optimizer kernel launch");
}

// The clip_grad_norm_stub's CUDA implementation: partial sums into workspace[0, nchunks), the
// coefficient and its flag into workspace[nchunks, nchunks + 2), the norm into `norm`.
void clip_grad_norm_cuda(const TensorList& list, double max_norm, const ArrayView& norm, const ArrayView& workspace,
                         const ExecContext& ctx) {
  const cudaStream_t s = as_stream(ctx.stream);
  const int64_t nchunks = tensor_chunk_count(list);
  if (workspace.size < nchunks + 2) throw std::logic_error("clip_grad_norm: workspace too small");
  double* partial = workspace.ptr<double>();
  double* coef = partial + nchunks;
  int64_t blocks_done = 0;
  for_each_launch<1>(list, DType::f32, blocks_done, [&](const LaunchTable<1>& tab, int blocks) {
    sumsq_kernel<float><<<unsigned(blocks), kBlock, 0, s>>>(tab, partial);
  });
  for_each_launch<1>(list, DType::f64, blocks_done, [&](const LaunchTable<1>& tab, int blocks) {
    sumsq_kernel<double><<<unsigned(blocks), kBlock, 0, s>>>(tab, partial);
  });
  finish_norm_kernel<<<1, kBlock, 0, s>>>(partial, nchunks, max_norm, norm.ptr<double>(), coef);
  int64_t unused = 0;
  for_each_launch<1>(list, DType::f32, unused, [&](const LaunchTable<1>& tab, int blocks) {
    scale_kernel<float><<<unsigned(blocks), kBlock, 0, s>>>(tab, coef);
  });
  for_each_launch<1>(list, DType::f64, unused, [&](const LaunchTable<1>& tab, int blocks) {
    scale_kernel<double><<<unsigned(blocks), kBlock, 0, s>>>(tab, coef);
  });
  throw_if_error(cudaGetLastError(), "clip_grad_norm kernel launch");
}

}  // namespace
}  // namespace cuda
}  // namespace nk

NK_REGISTER_DISPATCH(optim_step_stub, cuda, &nk::cuda::optim_step_cuda);
NK_REGISTER_DISPATCH(clip_grad_norm_stub, cuda, &nk::cuda::clip_grad_norm_cuda);
