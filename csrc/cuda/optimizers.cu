// CUDA optimizer kernels: multi-tensor apply of SGD / Adagrad / RMSprop / Adam(W) (AMSGrad) / EMA and
// clip_grad_norm, registered on the stubs of drivers/optimizers.hpp. float32/float64 params, and
// float16/bfloat16 params (issue 15) with float32 arithmetic, states in float32 or the params'
// dtype, a float32 master copy or stochastic rounding with the CPU's Philox words: the same
// operations as the CPU kernels (see Rn below), so the results match the CPU's FMA levels. CPU twin and reference:
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

#include <type_traits>

#include "core/philox.hpp"
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
  static constexpr int kTensors = NOPS == 1 ? 96 : NOPS == 2 ? 64 : NOPS == 3 ? 48 : NOPS <= 5 ? 36 : 32;
  static constexpr int kBlocks = 320;
  void* ptr[NOPS][kTensors];
  int64_t n[kTensors];
  int64_t start[kTensors];           // flat index of the tensor's element 0 in the call's list (stochastic rounding)
  int64_t partial_base;              // clip_grad_norm: partial-sum index of this launch's block 0
  int32_t block_chunk[kBlocks];      // chunk of the tensor, in units of kChunk
  uint8_t block_tensor[kBlocks];     // entry of ptr / n
};
static_assert(LaunchTable<1>::kTensors < 256, "block_tensor entries are 8 bits");

// Arithmetic rounded as written (the _rn intrinsics are never contracted into FMA) and the
// multiply-adds the CPU kernels fuse (cpu/optimizers.cpp: fmadd where GCC's contraction fused in
// the build before issue 15): the float32 results are those of the CPU's FMA levels (AVX2,
// AVX-512) bit for bit, and the stochastic rounding of 16-bit parameters sees the same values.
// Division and square root are IEEE (correctly rounded) as on the CPU.
struct Rn {
  static __device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
  static __device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }
  static __device__ __forceinline__ float sub(float a, float b) { return __fsub_rn(a, b); }
  static __device__ __forceinline__ float div(float a, float b) { return __fdiv_rn(a, b); }
  static __device__ __forceinline__ float sqrt(float a) { return __fsqrt_rn(a); }
  static __device__ __forceinline__ float fma(float a, float b, float c) { return __fmaf_rn(a, b, c); }
  static __device__ __forceinline__ double mul(double a, double b) { return __dmul_rn(a, b); }
  static __device__ __forceinline__ double add(double a, double b) { return __dadd_rn(a, b); }
  static __device__ __forceinline__ double sub(double a, double b) { return __dsub_rn(a, b); }
  static __device__ __forceinline__ double div(double a, double b) { return __ddiv_rn(a, b); }
  static __device__ __forceinline__ double sqrt(double a) { return __dsqrt_rn(a); }
  static __device__ __forceinline__ double fma(double a, double b, double c) { return __fma_rn(a, b, c); }
};

template <class P> struct SixteenBit : std::false_type {};
template <> struct SixteenBit<__half> : std::true_type {};
template <> struct SixteenBit<__nv_bfloat16> : std::true_type {};

// x rounded to the 16-bit storage P stochastically with the random word of flat element e
// (core/philox.hpp: the CPU kernels' words and bit functions).
template <class P>
__device__ __forceinline__ P store_stochastic(float x, uint64_t e, uint64_t step, uint64_t seed) {
  const uint32_t r = philox::rounding_word(e, step, seed);
  const uint32_t u = __float_as_uint(x);
  if constexpr (std::is_same<P, __nv_bfloat16>::value)
    return __ushort_as_bfloat16(uint16_t(philox::bf16_stochastic_bits<uint32_t>(u, r)));
  else
    return __ushort_as_half(uint16_t(philox::f16_stochastic_bits<uint32_t>(u, r)));
}

// One element of one op (the formulas of csrc/cpu/optimizers.cpp, in the same operations). P: the
// params' (and gradients') storage, S: the states' (EMA: the averages'), ROUND: how the updated
// parameter (EMA: average) is stored; C: the compute type. ptr = {p, g, [master,] states...}
// (EMA: {avg, p}).
template <class P, class S, int ROUND, int OP>
struct Update {
  using C = typename DevStorage<P>::C;
  C lr, wd, mu, omd, alpha, oma, eps, omb1, b2, omb2, step_size, ibc2, shrink, dec, omdec, gsign;
  int nesterov, in_sqrt, decoupled, has_wd;
  uint64_t seed, rng_step;
  explicit Update(const OptimHyper& h)
      : lr(C(h.lr)), wd(C(h.weight_decay)), mu(C(h.momentum)), omd(C(1.0 - h.dampening)), alpha(C(h.alpha)),
        oma(C(1.0 - h.alpha)), eps(C(h.eps)), omb1(C(1.0 - h.beta1)), b2(C(h.beta2)), omb2(C(1.0 - h.beta2)),
        step_size(C(h.step_size)), ibc2(C(h.inv_bc2_sqrt)), shrink(C(1.0 - h.lr * h.weight_decay)),
        dec(C(h.decay)), omdec(C(1.0 - h.decay)), gsign(h.maximize ? C(-1) : C(1)), nesterov(h.nesterov),
        in_sqrt(h.eps_in_sqrt), decoupled(h.decoupled), has_wd(h.weight_decay != 0), seed(h.seed),
        rng_step(h.rng_step) {}

  __device__ __forceinline__ void store_param(P* p, int64_t i, C x, int64_t flat) const {
    if constexpr (ROUND == kRoundStochastic && SixteenBit<P>::value)
      p[i] = store_stochastic<P>(x, uint64_t(flat), rng_step, seed);
    else
      p[i] = DevStorage<P>::store(x);
  }

  __device__ __forceinline__ void operator()(void* const* ptr, int64_t i, int64_t flat) const {
    using Ps = DevStorage<P>;
    using Ss = DevStorage<S>;
    if constexpr (OP == kEma) {  // avg = decay * avg + (1 - decay) * p, in the averages' storage S
      S* a = static_cast<S*>(ptr[0]);
      const C v = Rn::fma(dec, C(Ss::load(a[i])), Rn::mul(omdec, Ps::load(static_cast<const P*>(ptr[1])[i])));
      if constexpr (ROUND == kRoundStochastic && SixteenBit<S>::value)
        a[i] = store_stochastic<S>(v, uint64_t(flat), rng_step, seed);
      else
        a[i] = Ss::store(v);
      return;
    } else {
      constexpr int s0 = ROUND == kRoundMaster ? 3 : 2;
      P* p = static_cast<P*>(ptr[0]);
      float* master = nullptr;
      if constexpr (ROUND == kRoundMaster) master = static_cast<float*>(ptr[2]);
      S* st0 = nullptr;  // the first state (ptr holds only the op's operands: none for plain SGD)
      if constexpr (OP != kSgd) st0 = static_cast<S*>(ptr[s0]);
      C x;
      if constexpr (ROUND == kRoundMaster) x = master[i];
      else x = Ps::load(p[i]);
      C d = Rn::mul(gsign, Ps::load(static_cast<const P*>(ptr[1])[i]));  // maximize: the sign flipped (exact)
      const bool l2 = has_wd && !((OP == kAdam || OP == kAdamAmsgrad) && decoupled);
      if (l2) d = Rn::add(d, Rn::mul(wd, x));
      if constexpr (OP == kSgd) {
        x = Rn::fma(-lr, d, x);
      } else if constexpr (OP == kSgdMomentum) {
        const C b = Rn::fma(mu, C(Ss::load(st0[i])), Rn::mul(omd, d));
        st0[i] = Ss::store(b);
        x = Rn::fma(-lr, nesterov ? Rn::fma(mu, b, d) : b, x);
      } else if constexpr (OP == kAdagrad) {
        const C s = Rn::fma(d, d, C(Ss::load(st0[i])));
        st0[i] = Ss::store(s);
        x = Rn::fma(-lr, Rn::div(d, Rn::add(Rn::sqrt(s), eps)), x);
      } else if constexpr (OP == kRmsprop || OP == kRmspropMomentum || OP == kRmspropCentered ||
                           OP == kRmspropCenteredMomentum) {
        constexpr bool centered = OP == kRmspropCentered || OP == kRmspropCenteredMomentum;
        constexpr bool momentum = OP == kRmspropMomentum || OP == kRmspropCenteredMomentum;
        const C v = Rn::fma(alpha, C(Ss::load(st0[i])), Rn::mul(oma, Rn::mul(d, d)));
        st0[i] = Ss::store(v);
        C var = v;
        if constexpr (centered) {  // grad_avg: lerp toward d; var = v - ga * ga (fused)
          S* st1 = static_cast<S*>(ptr[s0 + 1]);
          const C g0 = Ss::load(st1[i]);
          const C ga = Rn::fma(oma, Rn::sub(d, g0), g0);
          st1[i] = Ss::store(ga);
          var = Rn::fma(-ga, ga, v);
        }
        const C den = in_sqrt ? Rn::sqrt(Rn::add(var, eps)) : Rn::add(Rn::sqrt(var), eps);
        if constexpr (momentum) {
          S* sb = static_cast<S*>(ptr[s0 + (centered ? 2 : 1)]);
          const C b = Rn::fma(mu, C(Ss::load(sb[i])), Rn::div(d, den));
          sb[i] = Ss::store(b);
          x = Rn::fma(-lr, b, x);
        } else {
          x = Rn::fma(-lr, Rn::div(d, den), x);
        }
      } else if constexpr (OP == kAdam || OP == kAdamAmsgrad) {
        S* st1 = static_cast<S*>(ptr[s0 + 1]);
        const C m0 = Ss::load(st0[i]);
        const C m = Rn::fma(omb1, Rn::sub(d, m0), m0);
        const C v = Rn::fma(b2, C(Ss::load(st1[i])), Rn::mul(omb2, Rn::mul(d, d)));
        C vd = v;
        if constexpr (OP == kAdamAmsgrad) {  // vmax = max(vmax, v), NaN propagating (torch.maximum)
          S* st2 = static_cast<S*>(ptr[s0 + 2]);
          const C old = Ss::load(st2[i]);
          vd = (v > old || v != v) ? v : old;
          st2[i] = Ss::store(vd);
        }
        st0[i] = Ss::store(m);
        st1[i] = Ss::store(v);
        const C q = Rn::div(m, Rn::fma(Rn::sqrt(vd), ibc2, eps));
        if (has_wd && decoupled) x = Rn::fma(x, shrink, -Rn::mul(step_size, q));  // AdamW: the decay product fused
        else x = Rn::fma(-step_size, q, x);
      }
      if constexpr (ROUND == kRoundMaster) master[i] = x;
      store_param(p, i, x, flat);
    }
  }
};
using LargestUpdate = Update<double, double, kRoundNearest, kAdamAmsgrad>;
static_assert(sizeof(LaunchTable<6>) + sizeof(LargestUpdate) <= 4000, "kernel parameters over 4 KB");
static_assert(sizeof(LaunchTable<5>) + sizeof(LargestUpdate) <= 4000, "kernel parameters over 4 KB");
static_assert(sizeof(LaunchTable<4>) + sizeof(LargestUpdate) <= 4000, "kernel parameters over 4 KB");
static_assert(sizeof(LaunchTable<3>) + sizeof(LargestUpdate) <= 4000, "kernel parameters over 4 KB");
static_assert(sizeof(LaunchTable<2>) + sizeof(LargestUpdate) <= 4000, "kernel parameters over 4 KB");
static_assert(sizeof(LaunchTable<1>) + 3 * sizeof(double*) <= 4000, "kernel parameters over 4 KB");

// This block's tensor entry and element range [begin, end).
template <int NOPS>
__device__ __forceinline__ int block_range(const LaunchTable<NOPS>& tab, int64_t& begin, int64_t& end) {
  const int e = tab.block_tensor[blockIdx.x];
  begin = int64_t(tab.block_chunk[blockIdx.x]) * kChunk;
  end = begin + kChunk < tab.n[e] ? begin + kChunk : tab.n[e];
  return e;
}

template <class F, int NOPS>
__global__ void __launch_bounds__(kBlock) multi_tensor_kernel(const LaunchTable<NOPS> tab, const F f) {
  int64_t begin, end;
  const int e = block_range(tab, begin, end);
  void* p[NOPS];
#pragma unroll
  for (int k = 0; k < NOPS; ++k) p[k] = tab.ptr[k][e];
  const int64_t start = tab.start[e];
  for (int64_t base = begin + threadIdx.x; base < end; base += int64_t(kBlock) * kIlp) {
#pragma unroll
    for (int u = 0; u < kIlp; ++u) {
      const int64_t i = base + int64_t(u) * kBlock;
      if (i < end) f(p, i, start + i);
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
    const double x = double(DevStorage<T>::load(g[i]));  // 16-bit: exact widening, the square exact in float64
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

// g = g * coef (16-bit: in float32, rounded to nearest, as the CPU's kScale kernel).
template <class T>
__global__ void __launch_bounds__(kBlock) scale_kernel(const LaunchTable<1> tab, const double* __restrict__ coef) {
  using St = DevStorage<T>;
  if (coef[1] == 0.0) return;
  const typename St::C c = typename St::C(coef[0]);
  int64_t begin, end;
  T* g = static_cast<T*>(tab.ptr[0][block_range(tab, begin, end)]);
  for (int64_t base = begin + threadIdx.x; base < end; base += int64_t(kBlock) * kIlp) {
#pragma unroll
    for (int u = 0; u < kIlp; ++u) {
      const int64_t i = base + int64_t(u) * kBlock;
      if (i < end) g[i] = St::store(Rn::mul(St::load(g[i]), c));
    }
  }
}

// Fills launch tables with every chunk of the non-empty tensors t with take(t), in list order,
// and calls launch(table, blocks) for each full table and the last one. `blocks_done` counts the
// blocks of all launches so far (the partial-sum index of the next one). Each entry records the
// flat index of its tensor's element 0 in the whole list (tensors end to end, in list order, as
// the CPU driver numbers them).
template <int NOPS, class Take, class Launch>
void for_each_launch(const TensorList& list, Take&& take, int64_t& blocks_done, Launch&& launch) {
  using Table = LaunchTable<NOPS>;
  Table tab;
  int tensors = 0, blocks = 0;
  auto flush = [&] {
    tab.partial_base = blocks_done;
    launch(tab, blocks);
    blocks_done += blocks;
    tensors = blocks = 0;
  };
  int64_t start = 0;
  for (int64_t t = 0; t < list.count(); ++t) {
    const int64_t n = list.size[size_t(t)];
    const int64_t t_start = start;
    start += n;
    if (n == 0 || !take(t)) continue;
    const int64_t chunks = (n + kChunk - 1) / kChunk;
    int64_t c = 0;
    while (c < chunks) {
      if (tensors == Table::kTensors) flush();
      const int e = tensors++;
      for (int k = 0; k < NOPS; ++k) tab.ptr[k][e] = list.at(t, k);
      tab.n[e] = n;
      tab.start[e] = t_start;
      for (; c < chunks && blocks < Table::kBlocks; ++c, ++blocks) {
        tab.block_tensor[blocks] = uint8_t(e);
        tab.block_chunk[blocks] = int32_t(c);
      }
      if (blocks == Table::kBlocks) flush();  // the rest of tensor t (if any) starts the next table
    }
  }
  if (blocks > 0) flush();
}

template <class F, int NOPS, class Take>
void launch_update(const TensorList& list, Take&& take, const OptimHyper& h, cudaStream_t s) {
  const F f(h);
  int64_t blocks_done = 0;
  for_each_launch<NOPS>(list, take, blocks_done, [&](const LaunchTable<NOPS>& tab, int blocks) {
    multi_tensor_kernel<F, NOPS><<<unsigned(blocks), kBlock, 0, s>>>(tab, f);
  });
}

// The 16-bit params of storage P: states float32 or in P (ROUND nearest / stochastic), or a
// float32 master copy (float32 states: the binding's rule).
template <class P, int OP, int NOPS>
void step_16bit(const TensorList& list, DType dt, const OptimHyper& h, cudaStream_t s) {
  auto f32_states = [&](int64_t t) { return list.dtype[size_t(t)] == dt && list.state_f32(t); };
  auto own_states = [&](int64_t t) { return list.dtype[size_t(t)] == dt && !list.state_f32(t); };
  if (h.rounding == kRoundMaster) {
    if constexpr (OP != kEma)
      launch_update<Update<P, float, kRoundMaster, OP>, NOPS>(
          list, [&](int64_t t) { return list.dtype[size_t(t)] == dt; }, h, s);
  } else if (h.rounding == kRoundStochastic) {
    launch_update<Update<P, float, kRoundStochastic, OP>, NOPS>(list, f32_states, h, s);
    launch_update<Update<P, P, kRoundStochastic, OP>, NOPS>(list, own_states, h, s);
  } else {
    launch_update<Update<P, float, kRoundNearest, OP>, NOPS>(list, f32_states, h, s);
    launch_update<Update<P, P, kRoundNearest, OP>, NOPS>(list, own_states, h, s);
  }
}

template <int OP, int NOPS>
void step_op(const TensorList& list, const OptimHyper& h, cudaStream_t s) {
  const bool master = h.rounding == kRoundMaster;
  if (list.nops != NOPS + (master ? 1 : 0)) throw std::logic_error("optimizer step: wrong operand count");
  if (!master) {  // float32 / float64 params take no master copy (the binding refuses one)
    launch_update<Update<float, float, kRoundNearest, OP>, NOPS>(
        list, [&](int64_t t) { return list.dtype[size_t(t)] == DType::f32; }, h, s);
    launch_update<Update<double, double, kRoundNearest, OP>, NOPS>(
        list, [&](int64_t t) { return list.dtype[size_t(t)] == DType::f64; }, h, s);
  }
  if constexpr (OP == kEma) {
    step_16bit<__half, OP, NOPS>(list, DType::f16, h, s);
    step_16bit<__nv_bfloat16, OP, NOPS>(list, DType::bf16, h, s);
  } else {
    // with a master copy the table holds one more operand: {p, g, master, states...}
    if (master) {
      step_16bit<__half, OP, NOPS + 1>(list, DType::f16, h, s);
      step_16bit<__nv_bfloat16, OP, NOPS + 1>(list, DType::bf16, h, s);
    } else {
      step_16bit<__half, OP, NOPS>(list, DType::f16, h, s);
      step_16bit<__nv_bfloat16, OP, NOPS>(list, DType::bf16, h, s);
    }
  }
}

// The optim_step_stub's CUDA implementation: C-contiguous tensors on ctx's device, on ctx's stream.
void optim_step_cuda(OptimOp op, const TensorList& list, const OptimHyper& h, const ExecContext& ctx) {
  const cudaStream_t s = as_stream(ctx.stream);
  switch (op) {
    case kSgd: step_op<kSgd, 2>(list, h, s); break;
    case kSgdMomentum: step_op<kSgdMomentum, 3>(list, h, s); break;
    case kAdagrad: step_op<kAdagrad, 3>(list, h, s); break;
    case kRmsprop: step_op<kRmsprop, 3>(list, h, s); break;
    case kRmspropMomentum: step_op<kRmspropMomentum, 4>(list, h, s); break;
    case kRmspropCentered: step_op<kRmspropCentered, 4>(list, h, s); break;
    case kRmspropCenteredMomentum: step_op<kRmspropCenteredMomentum, 5>(list, h, s); break;
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
  auto of = [&](DType dt) { return [&list, dt](int64_t t) { return list.dtype[size_t(t)] == dt; }; };
  int64_t blocks_done = 0;
  auto sums = [&](auto tag, DType dt) {
    using T = decltype(tag);
    for_each_launch<1>(list, of(dt), blocks_done, [&](const LaunchTable<1>& tab, int blocks) {
      sumsq_kernel<T><<<unsigned(blocks), kBlock, 0, s>>>(tab, partial);
    });
  };
  sums(float{}, DType::f32);
  sums(double{}, DType::f64);
  sums(__half{}, DType::f16);
  sums(__nv_bfloat16{}, DType::bf16);
  finish_norm_kernel<<<1, kBlock, 0, s>>>(partial, nchunks, max_norm, norm.ptr<double>(), coef);
  int64_t unused = 0;
  auto scale = [&](auto tag, DType dt) {
    using T = decltype(tag);
    for_each_launch<1>(list, of(dt), unused, [&](const LaunchTable<1>& tab, int blocks) {
      scale_kernel<T><<<unsigned(blocks), kBlock, 0, s>>>(tab, coef);
    });
  };
  scale(float{}, DType::f32);
  scale(double{}, DType::f64);
  scale(__half{}, DType::f16);
  scale(__nv_bfloat16{}, DType::bf16);
  throw_if_error(cudaGetLastError(), "clip_grad_norm kernel launch");
}

}  // namespace
}  // namespace cuda
}  // namespace nk

NK_REGISTER_DISPATCH(optim_step_stub, cuda, &nk::cuda::optim_step_cuda);
NK_REGISTER_DISPATCH(clip_grad_norm_stub, cuda, &nk::cuda::clip_grad_norm_cuda);
