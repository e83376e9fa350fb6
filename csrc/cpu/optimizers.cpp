// Optimizer update kernels, one SIMD source compiled per ISA level: SGD (PyTorch
// momentum/dampening/nesterov), Adagrad, RMSprop (optionally centered, with momentum), Adam/AdamW (optionally AMSGrad), EMA averaging,
// gradient scaling and the float64 sum of squares used by clip_grad_norm.
// maximize (torch.optim's): the gradient enters every update with its sign flipped,
// d = gsign * g with gsign = -1 (exact), +1 otherwise (exact: the minimising results keep their bits).
// float32/float64 parameters, and
// float16/bfloat16 parameters and gradients with float32 arithmetic (eps and the division in
// float32: fp16 parameters with zero gradients never meet 0/0), states in float32 or the params'
// dtype, the updated parameter rounded to nearest, stochastically, or taken from a float32
// master copy (OptimHyper::rounding, cpu/optimizers.hpp).
// Each kernel makes ONE pass over memory per element: the parameter and its state are read
// and written back in the same loop (in place, fused). Kernels work on one contiguous piece
// of one tensor; csrc/drivers/optimizers.cpp cuts a whole list of tensors into fixed chunks
// and runs them in one parallel region (multi-tensor apply).
// The update formulas are written once (the *Core functors, on vectors of the compute type) and
// driven by param_update for every storage combination, so the float32 master copy of a 16-bit
// parameter is updated by exactly the float32 kernel's operations (bitwise its trajectory). This TU
// compiles with -ffp-contract=off and says where a multiply-add is fused (fmadd_once, core/simd.hpp:
// one rounding at every level, the baseline's emulated, so every level gives the same bits):
// left to the compiler, which product of a*b - c*d it fuses depends on the code around the
// formula, and the float32 kernel and the master copy's could round differently. The fusions are
// those GCC's contraction chose in the build before issue 15 (the first product of a sum, in
// evaluation order, fused), so float32/float64 results keep their bits; the CUDA twin places
// the same fusions (__fmaf_rn) and matches the FMA levels bit for bit.
// Reference: nnkernels.reference.optimizers. CUDA twin: csrc/cuda/optimizers.cu.
// Test: pytest tests/test_optimizers.py ; bench: python -m nnkernels bench --ops optimizers
#include "cpu/optimizers.hpp"

#include <type_traits>

#include "core/philox.hpp"
#include "core/simd.hpp"

NK_KERNEL_NAMESPACE_BEGIN
namespace {

template <class T> using V = typename Simd<compute_t<T>>::V;

// The update cores and the per-vector body are inlined into the vector loop (NK_AI, core/simd.hpp:
// out of line, Adam took twice the time per element).

// Full vectors use plain loads/stores; the tail goes through the same vector code with
// partial loads/stores, so an element's result never depends on where a chunk starts.
struct Full {};
struct Part {};
template <class T> inline V<T> ld(const T* p, int64_t, Full) { return Storage<T>::load(p); }
template <class T> inline V<T> ld(const T* p, int64_t k, Part) { return Storage<T>::load_partial(p, k); }
template <class T> inline void st(T* p, V<T> v, int64_t, Full) { Storage<T>::store(p, v); }
template <class T> inline void st(T* p, V<T> v, int64_t k, Part) { Storage<T>::store_partial(p, v, k); }

// body(i, k, tag) handles elements [i, i + k); two full vectors per iteration for ILP.
// `align` (an array of type A with the element count of the others: the parameters, or with
// 16-bit params their float32 master copy / states, the widest streams) is brought to vector
// alignment by a partial head first: NumPy's large buffers sit 16 bytes past a page boundary,
// and unaligned 64-byte accesses split cache lines. Lanes are independent, so the peel never
// changes a result.
template <class T, class A, class Body>
inline void for_vectors(int64_t n, const A* align, Body body) {
  constexpr int64_t N = Storage<T>::N;
  static_assert(Storage<A>::N == N, "one lane count for every operand");
  constexpr int64_t B = Storage<A>::kBytes;
  int64_t i = 0;
  const uintptr_t mis = reinterpret_cast<uintptr_t>(align) % uintptr_t(B);
  if (mis != 0 && mis % sizeof(A) == 0 && n > 2 * N) {
    i = int64_t((uintptr_t(B) - mis) / sizeof(A));
    body(0, i, Part{});
  }
  for (; i + 2 * N <= n; i += 2 * N) {
    body(i, N, Full{});
    body(i + N, N, Full{});
  }
  for (; i + N <= n; i += N) body(i, N, Full{});
  if (i < n) body(i, n - i, Part{});
}

inline V<float> vsqrt(V<float> x) {
#if defined(__AVX512F__)
  __m512 r; std::memcpy(&r, &x, 64); r = _mm512_maskz_sqrt_ps(__mmask16(0xFFFF), r); std::memcpy(&x, &r, 64);
#elif defined(__AVX__)
  __m256 r; std::memcpy(&r, &x, 32); r = _mm256_sqrt_ps(r); std::memcpy(&x, &r, 32);
#else
  __m128 r; std::memcpy(&r, &x, 16); r = _mm_sqrt_ps(r); std::memcpy(&x, &r, 16);
#endif
  return x;
}
inline V<double> vsqrt(V<double> x) {
#if defined(__AVX512F__)
  __m512d r; std::memcpy(&r, &x, 64); r = _mm512_maskz_sqrt_pd(__mmask8(0xFF), r); std::memcpy(&x, &r, 64);
#elif defined(__AVX__)
  __m256d r; std::memcpy(&r, &x, 32); r = _mm256_sqrt_pd(r); std::memcpy(&x, &r, 32);
#else
  __m128d r; std::memcpy(&r, &x, 16); r = _mm_sqrt_pd(r); std::memcpy(&x, &r, 16);
#endif
  return x;
}

// ---------------------------------------------------------------- stochastic rounding
// 32 random bits per element: word 0 of Philox4x32-10 block (counter (e, e >> 32, step, step >> 32),
// key seed) for the lanes' flat indices e = index, index + 1, ... (philox::rounding_word's words,
// core/philox.hpp, as the CUDA twin draws them)
inline U32V random_words(int64_t index, const OptimHyper* h) {
  U32V c0, c1;
  for (int l = 0; l < Simd<float>::N; ++l) {
    const uint64_t e = uint64_t(index) + uint64_t(l);
    c0[l] = uint32_t(e);
    c1[l] = uint32_t(e >> 32);
  }
  U32V c2 = U32V{} + uint32_t(h->rng_step), c3 = U32V{} + uint32_t(h->rng_step >> 32);
  philox::rounds10(c0, c1, c2, c3, uint32_t(h->seed), uint32_t(h->seed >> 32));
  return c0;
}

template <class X, class Tag>
inline void st_stochastic(X* p, V<float> v, int64_t k, Tag, int64_t index, const OptimHyper* h) {
  const U32V r = random_words(index, h);
  U32V bits;
  if constexpr (std::is_same_v<X, bfloat16_t>) bits = philox::bf16_stochastic_bits(bits_of(v), r);  // core/philox.hpp
  else bits = philox::f16_stochastic_bits(bits_of(v), r);
  const H16V hv = narrow_u32(bits);
  if constexpr (std::is_same_v<Tag, Full>) store_h16(p, hv);
  else store_h16_partial(p, hv, k);
}

// ---------------------------------------------------------------- the update formulas
// Each core maps (p, d, states) of one vector to the new values, in the compute type C.

// gsign: -1 for maximize, else +1 (multiplying by either is exact). With weight decay the gradient
// term is d = gsign * g + wd * p with the product wd * p rounded (d = fma(gsign, g, wd * p), the
// contraction GCC chose: the first product of the sum).

// SGD without momentum (PyTorch):
//   d = gsign * g + wd * p          (only when wd != 0: 0 * inf would turn p = inf into NaN)
//   p = p - lr * d
template <class C, bool WD> struct SgdCore {
  C lr, wd, gs;
  static constexpr int kStates = 0;
  inline NK_AI void operator()(V<C>& pv, V<C> g, V<C>*) const {
    V<C> d = gs * g;
    if (WD) d = d + wd * pv;
    pv = fmadd_once(Simd<C>::splat(-lr), d, pv);
  }
};

// SGD with momentum (PyTorch formulation; b starts at zero, see nnkernels/optim_steps.py for the first step):
//   d = gsign * g + wd * p
//   b = momentum * b + (1 - dampening) * d
//   u = nesterov ? d + momentum * b : b
//   p = p - lr * u
template <class C, bool WD, bool NESTEROV> struct SgdMomentumCore {
  C lr, wd, mu, one_minus_damp, gs;
  static constexpr int kStates = 1;
  inline NK_AI void operator()(V<C>& pv, V<C> g, V<C>* s) const {
    const V<C> vmu = Simd<C>::splat(mu);
    V<C> d = gs * g;
    if (WD) d = d + wd * pv;
    const V<C> bv = fmadd_once(vmu, s[0], one_minus_damp * d);
    const V<C> u = NESTEROV ? fmadd_once(vmu, bv, d) : bv;
    s[0] = bv;
    pv = fmadd_once(Simd<C>::splat(-lr), u, pv);
  }
};

// Adagrad (PyTorch, lr_decay = 0, initial accumulator = whatever sum_sq holds):
//   d = gsign * g + wd * p
//   s = s + d * d
//   p = p - lr * (d / (sqrt(s) + eps))
template <class C, bool WD> struct AdagradCore {
  C lr, wd, eps, gs;
  static constexpr int kStates = 1;
  inline NK_AI void operator()(V<C>& pv, V<C> g, V<C>* s) const {
    V<C> d = gs * g;
    if (WD) d = d + wd * pv;
    const V<C> sv = fmadd_once(d, d, s[0]);
    s[0] = sv;
    pv = fmadd_once(Simd<C>::splat(-lr), d / (vsqrt(sv) + eps), pv);
  }
};

// RMSprop (PyTorch's torch.optim.RMSprop; Tieleman & Hinton 2012, centered: Graves 2013, "Generating
// Sequences With Recurrent Neural Networks", eq. 38-41):
//   d = gsign * g + wd * p
//   v = alpha * v + (1 - alpha) * (d * d)
//   CENTERED: ga = ga + (1 - alpha) * (d - ga)         (PyTorch's lerp form), var = v - ga * ga
//   otherwise var = v
//   den = eps_in_sqrt ? sqrt(var + eps) : sqrt(var) + eps      (TensorFlow : PyTorch placement)
//   MOMENTUM: b = momentum * b + d / den, p = p - lr * b
//   otherwise p = p - lr * (d / den)
// States in kernel order: sq_avg, [grad_avg,] [velocity]. v - ga*ga is not clamped (PyTorch does not):
// with both averages from zero it is >= 0 up to rounding.
template <class C, bool WD, bool IN_SQRT, bool CENTERED = false, bool MOMENTUM = false> struct RmspropCore {
  C lr, wd, alpha, one_minus_alpha, eps, gs, mu;
  static constexpr int kStates = 1 + int(CENTERED) + int(MOMENTUM);
  inline NK_AI void operator()(V<C>& pv, V<C> g, V<C>* s) const {
    V<C> d = gs * g;
    if (WD) d = d + wd * pv;
    const V<C> vv = fmadd_once(Simd<C>::splat(alpha), s[0], one_minus_alpha * (d * d));
    s[0] = vv;
    V<C> var = vv;
    if constexpr (CENTERED) {
      const V<C> ga = fmadd_once(Simd<C>::splat(one_minus_alpha), d - s[1], s[1]);
      s[1] = ga;
      var = fmadd_once(-ga, ga, vv);
    }
    const V<C> den = IN_SQRT ? vsqrt(var + eps) : vsqrt(var) + eps;
    if constexpr (MOMENTUM) {
      constexpr int b = 1 + int(CENTERED);
      const V<C> bv = fmadd_once(Simd<C>::splat(mu), s[b], d / den);
      s[b] = bv;
      pv = fmadd_once(Simd<C>::splat(-lr), bv, pv);
    } else {
      pv = fmadd_once(Simd<C>::splat(-lr), d / den, pv);
    }
  }
};

// Adam / AdamW (PyTorch; step_size = lr / (1 - beta1^t), inv_bc2_sqrt = 1 / sqrt(1 - beta2^t)):
//   AdamW: p = p * (1 - lr * wd), d = gsign * g     Adam: d = gsign * g + wd * p (L2 in the gradient)
//   m = m + (1 - beta1) * (d - m)              (PyTorch's lerp form of beta1*m + (1-beta1)*d)
//   v = beta2 * v + (1 - beta2) * (d * d)
//   AMSGrad (Reddi et al. 2018, "On the Convergence of Adam and Beyond"; PyTorch's form):
//   vmax = max(vmax, v) (NaN propagates, as torch.maximum), and vmax replaces v below
//   p = p - step_size * (m / (sqrt(v) * inv_bc2_sqrt + eps))
template <class C, int WD, bool AMS>  // WD: 0 none, 1 coupled (L2), 2 decoupled (AdamW)
struct AdamCore {
  C wd, shrink, omb1, b2, omb2, step_size, ibc2, eps, gs;
  static constexpr int kStates = AMS ? 3 : 2;  // exp_avg, exp_avg_sq[, max_exp_avg_sq]
  inline NK_AI void operator()(V<C>& pv, V<C> g, V<C>* s) const {
    V<C> d = gs * g;
    if (WD == 1) d = d + wd * pv;
    const V<C> mv = fmadd_once(Simd<C>::splat(omb1), d - s[0], s[0]);
    const V<C> vv = fmadd_once(Simd<C>::splat(b2), s[1], omb2 * (d * d));
    V<C> vd = vv;
    if (AMS) {
      vd = (vv > s[2]) | (vv != vv) ? vv : s[2];
      s[2] = vd;
    }
    const V<C> den = fmadd_once(vsqrt(vd), Simd<C>::splat(ibc2), Simd<C>::splat(eps));
    s[0] = mv;
    s[1] = vv;
    // AdamW: p * (1 - lr*wd) - step_size * m/den, the decay product fused
    if (WD == 2) pv = fmadd_once(pv, Simd<C>::splat(shrink), -(step_size * (mv / den)));
    else pv = fmadd_once(Simd<C>::splat(-step_size), mv / den, pv);
  }
};

// One pass over a piece: ptr = {p, g, [master,] states...}. P: the params' (and gradients')
// storage, S: the states', ROUND: how the new parameter is stored (cpu/optimizers.hpp).
template <class P, class S, int ROUND, class Core>
inline void param_update(void* const* ptr, int64_t n, const OptimHyper* h, int64_t index, const Core& core) {
  using C = compute_t<P>;
  constexpr int NS = Core::kStates;
  constexpr int s0 = ROUND == kRoundMaster ? 3 : 2;
  P* p = static_cast<P*>(ptr[0]);
  const P* g = static_cast<const P*>(ptr[1]);
  float* master = ROUND == kRoundMaster ? static_cast<float*>(ptr[2]) : nullptr;
  S* st_ptr[NS > 0 ? NS : 1] = {};
  for (int j = 0; j < NS; ++j) st_ptr[j] = static_cast<S*>(ptr[s0 + j]);
  auto body = [&](int64_t i, int64_t k, auto tag) NK_AI {
    V<C> pv;
    if constexpr (ROUND == kRoundMaster) pv = ld(master + i, k, tag);
    else pv = ld(p + i, k, tag);
    const V<C> gv = ld(g + i, k, tag);
    V<C> sv[NS > 0 ? NS : 1];
    for (int j = 0; j < NS; ++j) sv[j] = ld(st_ptr[j] + i, k, tag);
    core(pv, gv, sv);
    for (int j = 0; j < NS; ++j) st(st_ptr[j] + i, sv[j], k, tag);
    if constexpr (ROUND == kRoundMaster) {
      st(master + i, pv, k, tag);
      st(p + i, pv, k, tag);
    } else if constexpr (ROUND == kRoundStochastic) {
      st_stochastic(p + i, pv, k, tag, index + i, h);
    } else {
      st(p + i, pv, k, tag);
    }
  };
  if constexpr (ROUND == kRoundMaster) for_vectors<P>(n, master, body);
  else if constexpr (sizeof(S) > sizeof(P) && NS > 0) for_vectors<P>(n, st_ptr[0], body);
  else for_vectors<P>(n, p, body);
}

// The storage combination of this call: float32/float64 params carry their states in their
// own dtype; 16-bit params take the rounding mode and the states' dtype from the hyperparameters.
template <class P, class Core>
inline void dispatch(void* const* ptr, int64_t n, const OptimHyper* h, int64_t index, const Core& core) {
  if constexpr (sizeof(P) == 2) {
    if (h->rounding == kRoundMaster) return param_update<P, float, kRoundMaster>(ptr, n, h, index, core);
    if (h->state_f32) {
      if (h->rounding == kRoundStochastic) return param_update<P, float, kRoundStochastic>(ptr, n, h, index, core);
      return param_update<P, float, kRoundNearest>(ptr, n, h, index, core);
    }
    if (h->rounding == kRoundStochastic) return param_update<P, P, kRoundStochastic>(ptr, n, h, index, core);
    return param_update<P, P, kRoundNearest>(ptr, n, h, index, core);
  } else {
    return param_update<P, P, kRoundNearest>(ptr, n, h, index, core);
  }
}

template <class T>
inline compute_t<T> grad_sign(const OptimHyper* h) { return h->maximize ? compute_t<T>(-1) : compute_t<T>(1); }

template <class T>
void sgd(void* const* ptr, int64_t n, const OptimHyper* h, int64_t index) {
  using C = compute_t<T>;
  const C gs = grad_sign<T>(h);
  if (h->weight_decay != 0) dispatch<T>(ptr, n, h, index, SgdCore<C, true>{C(h->lr), C(h->weight_decay), gs});
  else dispatch<T>(ptr, n, h, index, SgdCore<C, false>{C(h->lr), C(0), gs});
}

template <class T>
void sgd_momentum(void* const* ptr, int64_t n, const OptimHyper* h, int64_t index) {
  using C = compute_t<T>;
  const C lr = C(h->lr), wd = C(h->weight_decay), mu = C(h->momentum), omd = C(1.0 - h->dampening);
  const C gs = grad_sign<T>(h);
  const bool w = h->weight_decay != 0;
  if (h->nesterov) {
    if (w) dispatch<T>(ptr, n, h, index, SgdMomentumCore<C, true, true>{lr, wd, mu, omd, gs});
    else dispatch<T>(ptr, n, h, index, SgdMomentumCore<C, false, true>{lr, wd, mu, omd, gs});
  } else {
    if (w) dispatch<T>(ptr, n, h, index, SgdMomentumCore<C, true, false>{lr, wd, mu, omd, gs});
    else dispatch<T>(ptr, n, h, index, SgdMomentumCore<C, false, false>{lr, wd, mu, omd, gs});
  }
}

template <class T>
void adagrad(void* const* ptr, int64_t n, const OptimHyper* h, int64_t index) {
  using C = compute_t<T>;
  const C gs = grad_sign<T>(h);
  if (h->weight_decay != 0)
    dispatch<T>(ptr, n, h, index, AdagradCore<C, true>{C(h->lr), C(h->weight_decay), C(h->eps), gs});
  else
    dispatch<T>(ptr, n, h, index, AdagradCore<C, false>{C(h->lr), C(0), C(h->eps), gs});
}

template <class T, bool CENTERED, bool MOMENTUM>
void rmsprop_any(void* const* ptr, int64_t n, const OptimHyper* h, int64_t index) {
  using C = compute_t<T>;
  const C lr = C(h->lr), wd = C(h->weight_decay), a = C(h->alpha), oma = C(1.0 - h->alpha), eps = C(h->eps);
  const C gs = grad_sign<T>(h), mu = C(h->momentum);
  const bool w = h->weight_decay != 0;
  if (h->eps_in_sqrt) {
    if (w) dispatch<T>(ptr, n, h, index, RmspropCore<C, true, true, CENTERED, MOMENTUM>{lr, wd, a, oma, eps, gs, mu});
    else dispatch<T>(ptr, n, h, index, RmspropCore<C, false, true, CENTERED, MOMENTUM>{lr, wd, a, oma, eps, gs, mu});
  } else {
    if (w) dispatch<T>(ptr, n, h, index, RmspropCore<C, true, false, CENTERED, MOMENTUM>{lr, wd, a, oma, eps, gs, mu});
    else dispatch<T>(ptr, n, h, index, RmspropCore<C, false, false, CENTERED, MOMENTUM>{lr, wd, a, oma, eps, gs, mu});
  }
}
template <class T, bool AMS>
void adam_any(void* const* ptr, int64_t n, const OptimHyper* h, int64_t index) {
  using C = compute_t<T>;
  const C wd = C(h->weight_decay), shrink = C(1.0 - h->lr * h->weight_decay);
  const C omb1 = C(1.0 - h->beta1), b2 = C(h->beta2), omb2 = C(1.0 - h->beta2);
  const C step_size = C(h->step_size), ibc2 = C(h->inv_bc2_sqrt), eps = C(h->eps), gs = grad_sign<T>(h);
  if (h->weight_decay == 0)
    dispatch<T>(ptr, n, h, index, AdamCore<C, 0, AMS>{wd, shrink, omb1, b2, omb2, step_size, ibc2, eps, gs});
  else if (h->decoupled)
    dispatch<T>(ptr, n, h, index, AdamCore<C, 2, AMS>{wd, shrink, omb1, b2, omb2, step_size, ibc2, eps, gs});
  else
    dispatch<T>(ptr, n, h, index, AdamCore<C, 1, AMS>{wd, shrink, omb1, b2, omb2, step_size, ibc2, eps, gs});
}

// EMA / Polyak averaging: avg = decay * avg + (1 - decay) * p. ptr = {avg, p}; T: the params' dtype;
// a 16-bit p's averages are float32 (state_f32) or in p's dtype, rounded to nearest or
// stochastically (ROUND).
template <class T, class A, int ROUND>
void ema_loop(void* const* ptr, int64_t n, const OptimHyper* h, int64_t index) {
  using C = compute_t<T>;
  A* a = static_cast<A*>(ptr[0]);
  const T* p = static_cast<const T*>(ptr[1]);
  const C dec = C(h->decay), omd = C(1.0 - h->decay);
  for_vectors<A>(n, a, [&](int64_t i, int64_t k, auto tag) {
    const V<C> v = fmadd_once(Simd<C>::splat(dec), ld(a + i, k, tag), omd * ld(p + i, k, tag));
    if constexpr (ROUND == kRoundStochastic) st_stochastic(a + i, v, k, tag, index + i, h);
    else st(a + i, v, k, tag);
  });
}
template <class T>
void ema(void* const* ptr, int64_t n, const OptimHyper* h, int64_t index) {
  if constexpr (sizeof(T) == 2) {
    if (h->state_f32) return ema_loop<T, float, kRoundNearest>(ptr, n, h, index);
    if (h->rounding == kRoundStochastic) return ema_loop<T, T, kRoundStochastic>(ptr, n, h, index);
  }
  ema_loop<T, T, kRoundNearest>(ptr, n, h, index);
}

// Gradient scaling (clip_grad_norm): g = g * scale (16-bit: rounded to nearest)
template <class T>
void scale(void* const* ptr, int64_t n, const OptimHyper* h, int64_t) {
  using C = compute_t<T>;
  T* g = static_cast<T*>(ptr[0]);
  const C c = C(h->scale);
  for_vectors<T>(n, g, [&](int64_t i, int64_t k, auto tag) { st(g + i, ld(g + i, k, tag) * c, k, tag); });
}

// Sum of squares in float64: four vector accumulators (float32 lanes widened to float64),
// combined in a fixed order, then the lanes in index order.
template <class T> struct Wide;  // float64 vector with the lane count of Simd<compute_t<T>>
template <> struct Wide<float> { typedef double type __attribute__((vector_size(kVecBytes * 2))); };
template <> struct Wide<double> { typedef double type __attribute__((vector_size(kVecBytes))); };

template <class T>
double sumsq(const void* xp, int64_t n) {
  using C = compute_t<T>;
  using S = Storage<T>;
  constexpr int N = S::N;
  using D = typename Wide<C>::type;
  const T* x = static_cast<const T*>(xp);
  D a0{}, a1{}, a2{}, a3{};
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    const D x0 = __builtin_convertvector(S::load(x + i), D);
    const D x1 = __builtin_convertvector(S::load(x + i + N), D);
    const D x2 = __builtin_convertvector(S::load(x + i + 2 * N), D);
    const D x3 = __builtin_convertvector(S::load(x + i + 3 * N), D);
    a0 += x0 * x0;
    a1 += x1 * x1;
    a2 += x2 * x2;
    a3 += x3 * x3;
  }
  for (; i + N <= n; i += N) {
    const D x0 = __builtin_convertvector(S::load(x + i), D);
    a0 += x0 * x0;
  }
  if (i < n) {
    const D x0 = __builtin_convertvector(S::load_partial(x + i, n - i), D);
    a0 += x0 * x0;
  }
  const D a = (a0 + a1) + (a2 + a3);
  double s = 0.0;
  for (int l = 0; l < N; ++l) s += a[l];
  return s;
}

}  // namespace
NK_KERNEL_NAMESPACE_END

// One column per dtype in DType order (float32, float64, float16, bfloat16). NK_OPT_ROW_OF's
// arguments after fn are fn's template arguments after the storage type (rmsprop_any's
// CENTERED/MOMENTUM, adam_any's AMS): a variant is a row, not a wrapper function.
#define NK_OPT_ROW(fn)                                                                          \
  {&nk::NK_ISA_NS::fn<float>, &nk::NK_ISA_NS::fn<double>, &nk::NK_ISA_NS::fn<nk::float16_t>, \
   &nk::NK_ISA_NS::fn<nk::bfloat16_t>}
#define NK_OPT_ROW_OF(fn, ...)                                                                  \
  {&nk::NK_ISA_NS::fn<float, __VA_ARGS__>, &nk::NK_ISA_NS::fn<double, __VA_ARGS__>,            \
   &nk::NK_ISA_NS::fn<nk::float16_t, __VA_ARGS__>, &nk::NK_ISA_NS::fn<nk::bfloat16_t, __VA_ARGS__>}
NK_DEFINE_ISA_TABLE(OptimizerKernels, optimizer_kernels) = {
    {NK_OPT_ROW(sgd), NK_OPT_ROW(sgd_momentum), NK_OPT_ROW(adagrad), NK_OPT_ROW_OF(rmsprop_any, false, false),
     NK_OPT_ROW_OF(adam_any, false), NK_OPT_ROW(ema), NK_OPT_ROW(scale), NK_OPT_ROW_OF(adam_any, true),
     NK_OPT_ROW_OF(rmsprop_any, false, true), NK_OPT_ROW_OF(rmsprop_any, true, false),
     NK_OPT_ROW_OF(rmsprop_any, true, true)},
    NK_OPT_ROW(sumsq),
};
#undef NK_OPT_ROW
#undef NK_OPT_ROW_OF
