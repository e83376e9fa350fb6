// Optimizer update kernels, float32/float64, one SIMD source compiled per ISA level:
// SGD (PyTorch momentum/dampening/nesterov), Adagrad, RMSprop, Adam/AdamW (optionally AMSGrad),
// EMA averaging, gradient scaling and the float64 sum of squares used by clip_grad_norm.
// maximize (torch.optim's): the gradient enters every update with its sign flipped,
// d = gsign * g with gsign = -1 (exact), +1 otherwise (exact: the minimising results keep their bits).
// Each kernel makes ONE pass over memory per element: the parameter and its state are read
// and written back in the same loop (in place, fused). Kernels work on one contiguous piece
// of one tensor; csrc/drivers/optimizers.cpp cuts a whole list of tensors into fixed chunks
// and runs them in one parallel region (multi-tensor apply).
// Reference: nnkernels.reference.optimizers. CUDA twin: csrc/cuda/optimizers.cu.
// Test: pytest tests/test_optimizers.py ; bench: python -m nnkernels bench --ops optimizers
#include "cpu/optimizers.hpp"

#include "core/simd.hpp"

NK_KERNEL_NAMESPACE_BEGIN
namespace {

template <class T> using V = typename Simd<T>::V;

// Full vectors use plain loads/stores; the tail goes through the same vector code with
// partial loads/stores, so an element's result never depends on where a chunk starts.
struct Full {};
struct Part {};
template <class T> inline V<T> ld(const T* p, int64_t, Full) { return Simd<T>::load(p); }
template <class T> inline V<T> ld(const T* p, int64_t k, Part) { return load_partial<T>(p, k); }
template <class T> inline void st(T* p, V<T> v, int64_t, Full) { Simd<T>::store(p, v); }
template <class T> inline void st(T* p, V<T> v, int64_t k, Part) { store_partial<T>(p, v, k); }

// body(i, k, tag) handles elements [i, i + k); two full vectors per iteration for ILP.
// `align` (the parameter array) is brought to vector alignment by a partial head first:
// NumPy's large buffers sit 16 bytes past a page boundary, and unaligned 64-byte accesses
// split cache lines. Lanes are independent, so the peel never changes a result.
template <class T, class Body>
inline void for_vectors(int64_t n, const T* align, Body body) {
  constexpr int64_t N = Simd<T>::N;
  int64_t i = 0;
  const uintptr_t mis = reinterpret_cast<uintptr_t>(align) % uintptr_t(kVecBytes);
  if (mis != 0 && mis % sizeof(T) == 0 && n > 2 * N) {
    i = int64_t((uintptr_t(kVecBytes) - mis) / sizeof(T));
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

// gsign: -1 for maximize, else +1 (multiplying by either is exact).
template <class T>
inline T grad_sign(const OptimHyper* h) { return h->maximize ? T(-1) : T(1); }

// SGD without momentum (PyTorch):
//   d = gsign * g + wd * p          (only when wd != 0: 0 * inf would turn p = inf into NaN)
//   p = p - lr * d
template <class T, bool WD>
void sgd_loop(T* p, const T* g, int64_t n, T lr, T wd, T gs) {
  for_vectors<T>(n, p, [&](int64_t i, int64_t k, auto tag) {
    V<T> pv = ld(p + i, k, tag), d = gs * ld(g + i, k, tag);
    if (WD) d = d + wd * pv;
    st(p + i, pv - lr * d, k, tag);
  });
}
template <class T>
void sgd(void* const* ptr, int64_t n, const OptimHyper* h) {
  T* p = static_cast<T*>(ptr[0]);
  const T* g = static_cast<const T*>(ptr[1]);
  if (h->weight_decay != 0) sgd_loop<T, true>(p, g, n, T(h->lr), T(h->weight_decay), grad_sign<T>(h));
  else sgd_loop<T, false>(p, g, n, T(h->lr), T(0), grad_sign<T>(h));
}

// SGD with momentum (PyTorch formulation; b starts at zero, see nnkernels/optim_steps.py for the first step):
//   d = gsign * g + wd * p
//   b = momentum * b + (1 - dampening) * d
//   u = nesterov ? d + momentum * b : b
//   p = p - lr * u
template <class T, bool WD, bool NESTEROV>
void sgd_momentum_loop(T* p, const T* g, T* b, int64_t n, T lr, T wd, T mu, T one_minus_damp, T gs) {
  for_vectors<T>(n, p, [&](int64_t i, int64_t k, auto tag) {
    V<T> pv = ld(p + i, k, tag), d = gs * ld(g + i, k, tag), bv = ld(b + i, k, tag);
    if (WD) d = d + wd * pv;
    bv = mu * bv + one_minus_damp * d;
    const V<T> u = NESTEROV ? d + mu * bv : bv;
    st(b + i, bv, k, tag);
    st(p + i, pv - lr * u, k, tag);
  });
}
template <class T>
void sgd_momentum(void* const* ptr, int64_t n, const OptimHyper* h) {
  T* p = static_cast<T*>(ptr[0]);
  const T* g = static_cast<const T*>(ptr[1]);
  T* b = static_cast<T*>(ptr[2]);
  const T lr = T(h->lr), wd = T(h->weight_decay), mu = T(h->momentum), omd = T(1.0 - h->dampening);
  const T gs = grad_sign<T>(h);
  const bool w = h->weight_decay != 0;
  if (h->nesterov) {
    if (w) sgd_momentum_loop<T, true, true>(p, g, b, n, lr, wd, mu, omd, gs);
    else sgd_momentum_loop<T, false, true>(p, g, b, n, lr, wd, mu, omd, gs);
  } else {
    if (w) sgd_momentum_loop<T, true, false>(p, g, b, n, lr, wd, mu, omd, gs);
    else sgd_momentum_loop<T, false, false>(p, g, b, n, lr, wd, mu, omd, gs);
  }
}

// Adagrad (PyTorch, lr_decay = 0, initial accumulator = whatever sum_sq holds):
//   d = gsign * g + wd * p
//   s = s + d * d
//   p = p - lr * (d / (sqrt(s) + eps))
template <class T, bool WD>
void adagrad_loop(T* p, const T* g, T* s, int64_t n, T lr, T wd, T eps, T gs) {
  for_vectors<T>(n, p, [&](int64_t i, int64_t k, auto tag) {
    V<T> pv = ld(p + i, k, tag), d = gs * ld(g + i, k, tag), sv = ld(s + i, k, tag);
    if (WD) d = d + wd * pv;
    sv = sv + d * d;
    st(s + i, sv, k, tag);
    st(p + i, pv - lr * (d / (vsqrt(sv) + eps)), k, tag);
  });
}
template <class T>
void adagrad(void* const* ptr, int64_t n, const OptimHyper* h) {
  T* p = static_cast<T*>(ptr[0]);
  const T* g = static_cast<const T*>(ptr[1]);
  T* s = static_cast<T*>(ptr[2]);
  const T gs = grad_sign<T>(h);
  if (h->weight_decay != 0) adagrad_loop<T, true>(p, g, s, n, T(h->lr), T(h->weight_decay), T(h->eps), gs);
  else adagrad_loop<T, false>(p, g, s, n, T(h->lr), T(0), T(h->eps), gs);
}

// RMSprop (PyTorch, not centered, no momentum):
//   d = gsign * g + wd * p
//   v = alpha * v + (1 - alpha) * (d * d)
//   den = eps_in_sqrt ? sqrt(v + eps) : sqrt(v) + eps      (TensorFlow : PyTorch placement)
//   p = p - lr * (d / den)
template <class T, bool WD, bool IN_SQRT>
void rmsprop_loop(T* p, const T* g, T* v, int64_t n, T lr, T wd, T alpha, T one_minus_alpha, T eps, T gs) {
  for_vectors<T>(n, p, [&](int64_t i, int64_t k, auto tag) {
    V<T> pv = ld(p + i, k, tag), d = gs * ld(g + i, k, tag), vv = ld(v + i, k, tag);
    if (WD) d = d + wd * pv;
    vv = alpha * vv + one_minus_alpha * (d * d);
    const V<T> den = IN_SQRT ? vsqrt(vv + eps) : vsqrt(vv) + eps;
    st(v + i, vv, k, tag);
    st(p + i, pv - lr * (d / den), k, tag);
  });
}
template <class T>
void rmsprop(void* const* ptr, int64_t n, const OptimHyper* h) {
  T* p = static_cast<T*>(ptr[0]);
  const T* g = static_cast<const T*>(ptr[1]);
  T* v = static_cast<T*>(ptr[2]);
  const T lr = T(h->lr), wd = T(h->weight_decay), a = T(h->alpha), oma = T(1.0 - h->alpha), eps = T(h->eps);
  const T gs = grad_sign<T>(h);
  const bool w = h->weight_decay != 0;
  if (h->eps_in_sqrt) {
    if (w) rmsprop_loop<T, true, true>(p, g, v, n, lr, wd, a, oma, eps, gs);
    else rmsprop_loop<T, false, true>(p, g, v, n, lr, wd, a, oma, eps, gs);
  } else {
    if (w) rmsprop_loop<T, true, false>(p, g, v, n, lr, wd, a, oma, eps, gs);
    else rmsprop_loop<T, false, false>(p, g, v, n, lr, wd, a, oma, eps, gs);
  }
}

// Adam / AdamW (PyTorch; step_size = lr / (1 - beta1^t), inv_bc2_sqrt = 1 / sqrt(1 - beta2^t)):
//   AdamW: p = p * (1 - lr * wd), d = gsign * g     Adam: d = gsign * g + wd * p (L2 in the gradient)
//   m = m + (1 - beta1) * (d - m)              (PyTorch's lerp form of beta1*m + (1-beta1)*d)
//   v = beta2 * v + (1 - beta2) * (d * d)
//   AMSGrad (Reddi et al. 2018, "On the Convergence of Adam and Beyond"; PyTorch's form):
//   vmax = max(vmax, v) (NaN propagates, as torch.maximum), and vmax replaces v below
//   p = p - step_size * (m / (sqrt(v) * inv_bc2_sqrt + eps))
template <class T, int WD, bool AMS>  // WD: 0 none, 1 coupled (L2), 2 decoupled (AdamW)
void adam_loop(T* p, const T* g, T* m, T* v, T* vmax, int64_t n, const OptimHyper* h) {
  const T wd = T(h->weight_decay), shrink = T(1.0 - h->lr * h->weight_decay);
  const T omb1 = T(1.0 - h->beta1), b2 = T(h->beta2), omb2 = T(1.0 - h->beta2);
  const T step_size = T(h->step_size), ibc2 = T(h->inv_bc2_sqrt), eps = T(h->eps), gs = grad_sign<T>(h);
  for_vectors<T>(n, p, [&](int64_t i, int64_t k, auto tag) {
    V<T> pv = ld(p + i, k, tag), d = gs * ld(g + i, k, tag), mv = ld(m + i, k, tag), vv = ld(v + i, k, tag);
    if (WD == 1) d = d + wd * pv;
    if (WD == 2) pv = pv * shrink;
    mv = mv + omb1 * (d - mv);
    vv = b2 * vv + omb2 * (d * d);
    V<T> vd = vv;
    if (AMS) {
      const V<T> old = ld(vmax + i, k, tag);
      vd = (vv > old) | (vv != vv) ? vv : old;
      st(vmax + i, vd, k, tag);
    }
    const V<T> den = vsqrt(vd) * ibc2 + eps;
    st(m + i, mv, k, tag);
    st(v + i, vv, k, tag);
    st(p + i, pv - step_size * (mv / den), k, tag);
  });
}
template <class T, bool AMS>
void adam_any(void* const* ptr, int64_t n, const OptimHyper* h) {
  T* p = static_cast<T*>(ptr[0]);
  const T* g = static_cast<const T*>(ptr[1]);
  T* m = static_cast<T*>(ptr[2]);
  T* v = static_cast<T*>(ptr[3]);
  T* vmax = AMS ? static_cast<T*>(ptr[4]) : nullptr;
  if (h->weight_decay == 0) adam_loop<T, 0, AMS>(p, g, m, v, vmax, n, h);
  else if (h->decoupled) adam_loop<T, 2, AMS>(p, g, m, v, vmax, n, h);
  else adam_loop<T, 1, AMS>(p, g, m, v, vmax, n, h);
}
template <class T>
void adam(void* const* ptr, int64_t n, const OptimHyper* h) { adam_any<T, false>(ptr, n, h); }
template <class T>
void adam_amsgrad(void* const* ptr, int64_t n, const OptimHyper* h) { adam_any<T, true>(ptr, n, h); }

// EMA / Polyak averaging: avg = decay * avg + (1 - decay) * p
template <class T>
void ema(void* const* ptr, int64_t n, const OptimHyper* h) {
  T* a = static_cast<T*>(ptr[0]);
  const T* p = static_cast<const T*>(ptr[1]);
  const T dec = T(h->decay), omd = T(1.0 - h->decay);
  for_vectors<T>(n, a, [&](int64_t i, int64_t k, auto tag) {
    st(a + i, dec * ld(a + i, k, tag) + omd * ld(p + i, k, tag), k, tag);
  });
}

// Gradient scaling (clip_grad_norm): g = g * scale
template <class T>
void scale(void* const* ptr, int64_t n, const OptimHyper* h) {
  T* g = static_cast<T*>(ptr[0]);
  const T c = T(h->scale);
  for_vectors<T>(n, g, [&](int64_t i, int64_t k, auto tag) { st(g + i, ld(g + i, k, tag) * c, k, tag); });
}

// Sum of squares in float64: four vector accumulators (float32 lanes widened to float64),
// combined in a fixed order, then the lanes in index order.
template <class T> struct Wide;  // float64 vector with the lane count of Simd<T>
template <> struct Wide<float> { typedef double type __attribute__((vector_size(kVecBytes * 2))); };
template <> struct Wide<double> { typedef double type __attribute__((vector_size(kVecBytes))); };

template <class T>
double sumsq(const void* xp, int64_t n) {
  constexpr int N = Simd<T>::N;
  using D = typename Wide<T>::type;
  const T* x = static_cast<const T*>(xp);
  D a0{}, a1{}, a2{}, a3{};
  int64_t i = 0;
  for (; i + 4 * N <= n; i += 4 * N) {
    const D x0 = __builtin_convertvector(Simd<T>::load(x + i), D);
    const D x1 = __builtin_convertvector(Simd<T>::load(x + i + N), D);
    const D x2 = __builtin_convertvector(Simd<T>::load(x + i + 2 * N), D);
    const D x3 = __builtin_convertvector(Simd<T>::load(x + i + 3 * N), D);
    a0 += x0 * x0;
    a1 += x1 * x1;
    a2 += x2 * x2;
    a3 += x3 * x3;
  }
  for (; i + N <= n; i += N) {
    const D x0 = __builtin_convertvector(Simd<T>::load(x + i), D);
    a0 += x0 * x0;
  }
  if (i < n) {
    const D x0 = __builtin_convertvector(load_partial<T>(x + i, n - i), D);
    a0 += x0 * x0;
  }
  const D a = (a0 + a1) + (a2 + a3);
  double s = 0.0;
  for (int l = 0; l < N; ++l) s += a[l];
  return s;
}

}  // namespace
NK_KERNEL_NAMESPACE_END

#define NK_OPT_PAIR(fn) {&nk::NK_ISA_NS::fn<float>, &nk::NK_ISA_NS::fn<double>}
NK_DEFINE_ISA_TABLE(OptimizerKernels, optimizer_kernels) = {
    {NK_OPT_PAIR(sgd), NK_OPT_PAIR(sgd_momentum), NK_OPT_PAIR(adagrad), NK_OPT_PAIR(rmsprop), NK_OPT_PAIR(adam),
     NK_OPT_PAIR(ema), NK_OPT_PAIR(scale), NK_OPT_PAIR(adam_amsgrad)},
    NK_OPT_PAIR(sumsq),
};
#undef NK_OPT_PAIR
