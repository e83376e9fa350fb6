// CUDA optimizer kernels: multi-tensor apply of SGD / Adagrad / RMSprop / Adam(W) (AMSGrad) / EMA and
// clip_grad_norm. CPU twin and reference: csrc/cpu/optimizers.cpp, nnkernels.reference.optimizers.
// Multi-tensor apply (idea of NVIDIA apex's multi_tensor_apply, written from scratch here):
// the host cuts every tensor into chunks of kChunk elements and writes a table of
// (tensor, chunk start) pairs plus a table of tensor pointers/sizes into one device buffer
// (copied per call, stream-ordered); ONE launch then runs one block per chunk, each thread
// handling kIlp elements per iteration (several elements per thread).
// clip_grad_norm: per-block float64 partial sums with a fixed-shape tree reduction, then one
// block combines the partials in order (deterministic, no atomics), computes the coefficient
// on the device, and a scaling launch reads it.
// Test: pytest -m gpu tests/test_optimizers.py ; bench: python -m nnkernels bench --ops optimizers
#include <cuda_runtime.h>

#include <cstring>
#include <vector>

#include "cuda/common.cuh"
#include "cuda/optimizers.hpp"

namespace nk {
namespace cuda {
namespace {

constexpr int kBlock = 256;
constexpr int kIlp = 4;
constexpr int64_t kChunk = int64_t(kBlock) * kIlp * 16;  // 16384 elements per block
constexpr int kMaxOps = 5;

struct TensorEntry {
  void* ptr[kMaxOps];
  int64_t n;
};
struct ChunkEntry {
  int64_t start;
  int32_t tensor;
  int32_t pad;
};

template <class T> __device__ __forceinline__ T dsqrt(T x);
template <> __device__ __forceinline__ float dsqrt(float x) { return sqrtf(x); }
template <> __device__ __forceinline__ double dsqrt(double x) { return sqrt(x); }

// Scalar math identical to the CPU kernels (see csrc/cpu/optimizers.cpp for the formulas).
template <class T, int OP>
struct Update {
  T lr, wd, mu, omd, alpha, oma, eps, omb1, b2, omb2, step_size, ibc2, shrink, dec, omdec, scale, gsign;
  int nesterov, in_sqrt, decoupled;
  explicit Update(const OptimHyper& h)
      : lr(T(h.lr)), wd(T(h.weight_decay)), mu(T(h.momentum)), omd(T(1.0 - h.dampening)), alpha(T(h.alpha)),
        oma(T(1.0 - h.alpha)), eps(T(h.eps)), omb1(T(1.0 - h.beta1)), b2(T(h.beta2)), omb2(T(1.0 - h.beta2)),
        step_size(T(h.step_size)), ibc2(T(h.inv_bc2_sqrt)), shrink(T(1.0 - h.lr * h.weight_decay)),
        dec(T(h.decay)), omdec(T(1.0 - h.decay)), scale(T(h.scale)), gsign(h.maximize ? T(-1) : T(1)),
        nesterov(h.nesterov),
        in_sqrt(h.eps_in_sqrt), decoupled(h.decoupled) {}

  __device__ __forceinline__ void operator()(T* const* p, int64_t i) const {
    if (OP == kEma) {
      p[0][i] = dec * p[0][i] + omdec * p[1][i];
      return;
    }
    if (OP == kScale) {
      p[0][i] = p[0][i] * scale;
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

template <class T, int OP>
__global__ void __launch_bounds__(kBlock) multi_tensor_kernel(const TensorEntry* __restrict__ tensors,
                                                              const ChunkEntry* __restrict__ chunks, Update<T, OP> f) {
  const ChunkEntry c = chunks[blockIdx.x];
  const TensorEntry te = tensors[c.tensor];
  T* p[kMaxOps];
#pragma unroll
  for (int k = 0; k < kMaxOps; ++k) p[k] = static_cast<T*>(te.ptr[k]);
  const int64_t end = c.start + kChunk < te.n ? c.start + kChunk : te.n;
  for (int64_t base = c.start + threadIdx.x; base < end; base += int64_t(kBlock) * kIlp) {
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
__global__ void __launch_bounds__(kBlock) sumsq_kernel(const TensorEntry* __restrict__ tensors,
                                                       const ChunkEntry* __restrict__ chunks, double* partial) {
  __shared__ double sh[kBlock];
  const ChunkEntry c = chunks[blockIdx.x];
  const TensorEntry te = tensors[c.tensor];
  const T* g = static_cast<const T*>(te.ptr[0]);
  const int64_t end = c.start + kChunk < te.n ? c.start + kChunk : te.n;
  double acc = 0.0;
  for (int64_t i = c.start + threadIdx.x; i < end; i += kBlock) {
    const double x = double(g[i]);
    acc += x * x;
  }
  const double s = block_sum(acc, sh);
  if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// One block: total = sum of partials (fixed order), norm, and the scaling coefficient
// (torch.nn.utils.clip_grad_norm_: max_norm / (norm + 1e-6) when norm > max_norm or NaN; else 1).
__global__ void __launch_bounds__(kBlock) finish_norm_kernel(const double* partial, int64_t nchunks, double max_norm,
                                                             double* out /* [norm, coef, apply] */) {
  __shared__ double sh[kBlock];
  double acc = 0.0;
  for (int64_t i = threadIdx.x; i < nchunks; i += kBlock) acc += partial[i];
  const double s = block_sum(acc, sh);
  if (threadIdx.x == 0) {
    const double norm = sqrt(s);
    const bool apply = norm > max_norm || isnan(norm);
    out[0] = norm;
    out[1] = apply ? max_norm / (norm + 1e-6) : 1.0;
    out[2] = apply ? 1.0 : 0.0;
  }
}

template <class T>
__global__ void __launch_bounds__(kBlock) scale_kernel(const TensorEntry* __restrict__ tensors,
                                                       const ChunkEntry* __restrict__ chunks, const double* coef) {
  if (coef[2] == 0.0) return;
  const T c = T(coef[1]);
  const ChunkEntry ch = chunks[blockIdx.x];
  const TensorEntry te = tensors[ch.tensor];
  T* g = static_cast<T*>(te.ptr[0]);
  const int64_t end = ch.start + kChunk < te.n ? ch.start + kChunk : te.n;
  for (int64_t base = ch.start + threadIdx.x; base < end; base += int64_t(kBlock) * kIlp) {
#pragma unroll
    for (int u = 0; u < kIlp; ++u) {
      const int64_t i = base + int64_t(u) * kBlock;
      if (i < end) g[i] = g[i] * c;
    }
  }
}

int nops_of(int op) {
  switch (op) {
    case kSgd: return 2;
    case kSgdMomentum: case kAdagrad: case kRmsprop: return 3;
    case kAdam: return 4;
    case kAdamAmsgrad: return 5;
    case kEma: return 2;
    default: return 1;
  }
}

// Device buffer holding [tensors | chunks | extra bytes], filled by one stream-ordered copy.
struct Tables {
  char* dev = nullptr;
  const TensorEntry* tensors = nullptr;
  const ChunkEntry* chunks = nullptr;
  char* extra = nullptr;
  int64_t nchunks = 0;
  cudaStream_t stream = nullptr;
  ~Tables() {
    if (dev) cudaFreeAsync(dev, stream);
  }
};

void build_tables(Tables& t, int nops, const uintptr_t* ptrs, const int64_t* sizes, int64_t ntensors,
                  size_t extra_bytes, cudaStream_t stream) {
  std::vector<TensorEntry> te;
  std::vector<ChunkEntry> ce;
  te.reserve(size_t(ntensors));
  for (int64_t k = 0; k < ntensors; ++k) {
    TensorEntry e{};
    for (int j = 0; j < nops; ++j) e.ptr[j] = reinterpret_cast<void*>(ptrs[k * nops + j]);
    e.n = sizes[k];
    for (int64_t s = 0; s < e.n; s += kChunk) ce.push_back({s, int32_t(te.size()), 0});
    te.push_back(e);
  }
  t.nchunks = int64_t(ce.size());
  t.stream = stream;
  if (t.nchunks == 0) return;
  const size_t tb = te.size() * sizeof(TensorEntry), cb = ce.size() * sizeof(ChunkEntry);
  const size_t cb_al = (cb + 15) / 16 * 16;
  std::vector<char> host(tb + cb_al);
  std::memcpy(host.data(), te.data(), tb);
  std::memcpy(host.data() + tb, ce.data(), cb);
  void* d = nullptr;
  throw_if_error(cudaMallocAsync(&d, host.size() + extra_bytes, stream), "optimizer tables: cudaMallocAsync");
  t.dev = static_cast<char*>(d);
  // Pageable source: the call returns once the data is staged, so `host` may be freed afterwards.
  throw_if_error(cudaMemcpyAsync(t.dev, host.data(), host.size(), cudaMemcpyHostToDevice, stream),
                 "optimizer tables: cudaMemcpyAsync");
  t.tensors = reinterpret_cast<const TensorEntry*>(t.dev);
  t.chunks = reinterpret_cast<const ChunkEntry*>(t.dev + tb);
  t.extra = t.dev + tb + cb_al;
}

template <class T, int OP>
void launch_typed(const Tables& t, const OptimHyper& h, cudaStream_t s) {
  multi_tensor_kernel<T, OP><<<unsigned(t.nchunks), kBlock, 0, s>>>(t.tensors, t.chunks, Update<T, OP>(h));
}

template <class T>
void launch_op(int op, const Tables& t, const OptimHyper& h, cudaStream_t s) {
  switch (op) {
    case kSgd: launch_typed<T, kSgd>(t, h, s); break;
    case kSgdMomentum: launch_typed<T, kSgdMomentum>(t, h, s); break;
    case kAdagrad: launch_typed<T, kAdagrad>(t, h, s); break;
    case kRmsprop: launch_typed<T, kRmsprop>(t, h, s); break;
    case kAdam: launch_typed<T, kAdam>(t, h, s); break;
    case kAdamAmsgrad: launch_typed<T, kAdamAmsgrad>(t, h, s); break;
    case kEma: launch_typed<T, kEma>(t, h, s); break;
    case kScale: launch_typed<T, kScale>(t, h, s); break;
    default: throw std::runtime_error("unknown optimizer op");
  }
}

}  // namespace

void launch_multi_tensor(int op, int dtype, const uintptr_t* ptrs, const int64_t* sizes, int64_t ntensors,
                         const OptimHyper& h, uintptr_t stream) {
  const cudaStream_t s = as_stream(stream);
  Tables t;
  build_tables(t, nops_of(op), ptrs, sizes, ntensors, 0, s);
  if (t.nchunks == 0) return;
  if (dtype == 0) launch_op<float>(op, t, h, s);
  else launch_op<double>(op, t, h, s);
  throw_if_error(cudaGetLastError(), "optimizer kernel launch");
}

double clip_grad_norm(int dtype, const uintptr_t* ptrs, const int64_t* sizes, int64_t ntensors, double max_norm,
                      uintptr_t stream) {
  const cudaStream_t s = as_stream(stream);
  Tables t;
  // extra: partial sums (one per chunk) then [norm, coef, apply].
  int64_t nchunks = 0;
  for (int64_t k = 0; k < ntensors; ++k) nchunks += (sizes[k] + kChunk - 1) / kChunk;
  build_tables(t, 1, ptrs, sizes, ntensors, size_t(nchunks + 3) * sizeof(double), s);
  if (t.nchunks == 0) return 0.0;
  double* partial = reinterpret_cast<double*>(t.extra);
  double* res = partial + t.nchunks;
  const unsigned grid = unsigned(t.nchunks);
  if (dtype == 0) sumsq_kernel<float><<<grid, kBlock, 0, s>>>(t.tensors, t.chunks, partial);
  else sumsq_kernel<double><<<grid, kBlock, 0, s>>>(t.tensors, t.chunks, partial);
  finish_norm_kernel<<<1, kBlock, 0, s>>>(partial, t.nchunks, max_norm, res);
  if (dtype == 0) scale_kernel<float><<<grid, kBlock, 0, s>>>(t.tensors, t.chunks, res);
  else scale_kernel<double><<<grid, kBlock, 0, s>>>(t.tensors, t.chunks, res);
  throw_if_error(cudaGetLastError(), "clip_grad_norm kernel launch");
  double norm = 0.0;
  throw_if_error(cudaMemcpyAsync(&norm, res, sizeof(double), cudaMemcpyDeviceToHost, s), "clip_grad_norm: copy");
  throw_if_error(cudaStreamSynchronize(s), "clip_grad_norm: synchronize");
  return norm;
}

}  // namespace cuda
}  // namespace nk
