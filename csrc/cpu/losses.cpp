// Fused softmax cross-entropy, forward and backward in one pass per row, float32/float64 and
// float16/bfloat16 logits (float32 arithmetic, dlogits rounded once to the logits' dtype, the loss
// in float64), one SIMD source compiled per ISA level (csrc/core/simd.hpp).
// Reference: nnkernels.reference.losses.softmax_cross_entropy. CUDA twin: csrc/cuda/losses.cu.
// Bindings (validation, threading, deterministic reduction): csrc/bindings/losses.cpp.
// Test: pytest tests/test_losses.py ; bench: python -m nnkernels bench --ops losses
#include "cpu/losses.hpp"

#include <math.h>

#include "core/simd.hpp"
#include "core/vmath.hpp"

NK_KERNEL_NAMESPACE_BEGIN
namespace {

template <class T> using V = typename Simd<compute_t<T>>::V;

// Lanes [0, k) true, the rest false (as an all-ones / zero integer mask).
template <class T> inline typename Simd<T>::I lanes_below(int64_t k) {
  typename Simd<T>::I idx;
  for (int j = 0; j < Simd<T>::N; ++j) idx[j] = typename IntOf<T>::type(j);
  return idx < typename IntOf<T>::type(k);
}

template <class T> inline T hmax(V<T> v) {
  T m = v[0];
  for (int j = 1; j < Simd<T>::N; ++j) m = v[j] > m ? v[j] : m;
  return m;
}

template <class T> inline T hsum(V<T> v) {
  // Fixed pairwise order: the result depends only on the vector width (the ISA level).
  for (int w = Simd<T>::N / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) v[j] = v[j] + v[j + w];
  return v[0];
}

template <class T> __attribute__((noinline, cold)) double nan_row(T* d, int64_t C) {
  for (int64_t j = 0; j < C; ++j) d[j] = T(__builtin_nan(""));
  return __builtin_nan("");
}

// One row, C >= 1:
//   m = max_j x_j                       (max trick: exp never overflows)
//   s = sum_j exp(x_j - m)
//   loss = m + log(s) - x_label
//   d_j = exp(x_j - m) / s * inv_n - (j == label) * inv_n
template <class T>
double xent_row(const T* x, int64_t label, T* d, int64_t C, double inv_n) {
  using S = Simd<T>;
  const T ninf = T(-__builtin_huge_val());
  // The bindings pass only checked labels; should one ever be outside the row anyway, the row
  // is a defined NaN (its loss and gradient), never a read or write outside the row.
  if (__builtin_expect(uint64_t(label) >= uint64_t(C), 0)) return nan_row<T>(d, C);
  const T xl = x[label];  // read before d is written: d may alias x (in place)
  // pass 1: maximum (NaN-propagating: a NaN anywhere makes the row loss NaN below)
  V<T> vm = S::splat(ninf);
  int64_t j = 0;
  for (; j + S::N <= C; j += S::N) {
    V<T> v = S::load(x + j);
    vm = v > vm ? v : vm;
  }
  if (j < C) {
    V<T> v = load_partial(x + j, C - j);
    v = lanes_below<T>(C - j) ? v : S::splat(ninf);
    vm = v > vm ? v : vm;
  }
  const T m = hmax<T>(vm);
  // pass 2: e_j = exp(x_j - m) into d, s = sum e_j (vector partial sums, fixed order)
  V<T> vs = S::splat(T(0));
  j = 0;
  for (; j + S::N <= C; j += S::N) {
    V<T> e = vexp<T>(S::load(x + j) - m);
    S::store(d + j, e);
    vs = vs + e;
  }
  if (j < C) {
    V<T> e = vexp<T>(load_partial(x + j, C - j) - m);
    e = lanes_below<T>(C - j) ? e : S::splat(T(0));
    store_partial(d + j, e, C - j);
    vs = vs + e;
  }
  const T s = hsum<T>(vs);
  // pass 3 (row is in L1): d_j = e_j * (inv_n / s), then the one-hot term
  const T scale = T(inv_n / double(s));
  j = 0;
  for (; j + S::N <= C; j += S::N) S::store(d + j, S::load(d + j) * scale);
  if (j < C) store_partial(d + j, load_partial(d + j, C - j) * scale, C - j);
  d[label] -= T(inv_n);
  return double(m) + log(double(s)) - double(xl);
}

// One row of 16-bit logits X (float32 arithmetic, T = float). The exponentials are not kept in d
// between passes (16-bit storage would round them before the scaling): rows of up to kXentBuf
// classes keep them in a float32 buffer on the stack, longer rows recompute them in pass 3 (the
// same function of the same inputs: the same values pass 2 summed, so both give the same bits).
// Each d_j = e_j * (inv_n / s) - (j == label) * inv_n is rounded once to X. The maximum and the
// sum are taken in the same order as the float32 path.
constexpr int64_t kXentBuf = 4096;
template <class X, class T = compute_t<X>>
double xent_row_16(const X* x, int64_t label, X* d, int64_t C, double inv_n) {
  using S = Storage<X>;
  constexpr int N = S::N;
  const T ninf = T(-__builtin_huge_val());
  if (__builtin_expect(uint64_t(label) >= uint64_t(C), 0)) {
    for (int64_t j = 0; j < C; ++j) store_one(d + j, T(__builtin_nan("")));
    return __builtin_nan("");
  }
  const T xl = load_one(x + label);  // read before d is written: d may alias x (in place)
  V<T> vm = Simd<T>::splat(ninf);
  int64_t j = 0;
  for (; j + N <= C; j += N) {
    V<T> v = S::load(x + j);
    vm = v > vm ? v : vm;
  }
  if (j < C) {
    V<T> v = S::load_partial(x + j, C - j);
    v = lanes_below<T>(C - j) ? v : Simd<T>::splat(ninf);
    vm = v > vm ? v : vm;
  }
  const T m = hmax<T>(vm);
  alignas(64) T ebuf[kXentBuf];
  const bool keep = C <= kXentBuf;
  V<T> vs = Simd<T>::splat(T(0));
  for (j = 0; j + N <= C; j += N) {
    const V<T> e = vexp<T>(S::load(x + j) - m);
    if (keep) Simd<T>::store(ebuf + j, e);
    vs = vs + e;
  }
  if (j < C) {
    V<T> e = vexp<T>(S::load_partial(x + j, C - j) - m);
    e = lanes_below<T>(C - j) ? e : Simd<T>::splat(T(0));
    if (keep) Simd<T>::store(ebuf + j, e);  // a whole vector: j + N <= kXentBuf (a multiple of N)
    vs = vs + e;
  }
  const T s = hsum<T>(vs);
  const T scale = T(inv_n / double(s)), hot = T(inv_n);
  // In place (d == x): each vector of d is written after the same vector of x was read.
  for (j = 0; j < C; j += N) {
    const int64_t k = C - j < N ? C - j : N;
    const V<T> e = keep ? Simd<T>::load(ebuf + j)
                        : vexp<T>((k == N ? S::load(x + j) : S::load_partial(x + j, k)) - m);
    V<T> v = e * scale;
    if (label >= j && label < j + k) v[label - j] -= hot;
    if (k == N) S::store(d + j, v); else S::store_partial(d + j, v, k);
  }
  return double(m) + log(double(s)) - double(xl);
}

template <class T>
double softmax_xent(const void* logits, int64_t ld, const int64_t* labels, void* dlogits, int64_t ldd, int64_t r0,
                    int64_t r1, int64_t C, double inv_n) {
  const T* x = static_cast<const T*>(logits);
  T* d = static_cast<T*>(dlogits);
  double total = 0.0;
  for (int64_t r = r0; r < r1; ++r) {
    if constexpr (sizeof(T) == 2) total += xent_row_16<T>(x + r * ld, labels[r], d + r * ldd, C, inv_n);
    else total += xent_row<T>(x + r * ld, labels[r], d + r * ldd, C, inv_n);
  }
  return total;
}

}  // namespace
NK_KERNEL_NAMESPACE_END

NK_DEFINE_ISA_TABLE(LossKernels, loss_kernels) = {
    {&nk::NK_ISA_NS::softmax_xent<float>, &nk::NK_ISA_NS::softmax_xent<double>,
     &nk::NK_ISA_NS::softmax_xent<nk::float16_t>, &nk::NK_ISA_NS::softmax_xent<nk::bfloat16_t>},
};
