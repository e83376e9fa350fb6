// Width-generic SIMD for kernel TUs, built on GCC/Clang vector extensions.
//
// The same source becomes SSE2 (16-byte), AVX2 (32-byte) or AVX-512 (64-byte) code
// depending on the -m flags of the TU that includes it; every definition lives in the
// per-level namespace (see common.hpp). Arithmetic, comparisons (lane masks of all-ones)
// and `cond ? a : b` work lane-wise on these types.
#pragma once
#include <cstring>
#include "core/common.hpp"
#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
#endif

NK_KERNEL_NAMESPACE_BEGIN

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX2__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif

template <class T> struct IntOf;
template <> struct IntOf<float> { using type = int32_t; };
template <> struct IntOf<double> { using type = int64_t; };

template <class T> struct Simd {
  typedef T V __attribute__((vector_size(kVecBytes), aligned(kVecBytes)));
  typedef typename IntOf<T>::type I __attribute__((vector_size(kVecBytes), aligned(kVecBytes)));
  static constexpr int N = kVecBytes / int(sizeof(T));

  static inline V load(const T* p) { V v; std::memcpy(&v, p, sizeof(V)); return v; }
  static inline void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  static inline V splat(T s) { return V{} + s; }
  static inline I as_int(V v) { I i; std::memcpy(&i, &v, sizeof(V)); return i; }
  static inline V as_float(I i) { V v; std::memcpy(&v, &i, sizeof(V)); return v; }
  // Non-temporal store (p must be kVecBytes-aligned): large outputs bypass the cache so
  // they do not cost a read-for-ownership of every destination line.
  static inline void stream(T* p, V v) {
#if defined(__AVX512F__)
    __m512i r; std::memcpy(&r, &v, 64); _mm512_stream_si512(reinterpret_cast<__m512i*>(p), r);
#elif defined(__AVX2__)
    __m256i r; std::memcpy(&r, &v, 32); _mm256_stream_si256(reinterpret_cast<__m256i*>(p), r);
#elif defined(__SSE2__)
    __m128i r; std::memcpy(&r, &v, 16); _mm_stream_si128(reinterpret_cast<__m128i*>(p), r);
#else
    store(p, v);
#endif
  }
};

// a * b + c with one rounding where the level has FMA, two where it has not. Written out
// rather than left to -ffp-contract: the compiler fuses a*b+c only when both operations sit in
// one basic block, so a loop body inlined once for full vectors and once for a partial tail
// (loads chosen by a branch) could round the same element differently in the two copies.
template <class V> inline V fmadd(V a, V b, V c) {
#if defined(__AVX512F__) || defined(__FMA__)
  using E = __typeof__(a[0]);
#endif
#if defined(__AVX512F__)
  if constexpr (sizeof(V) == 64 && sizeof(E) == 4) return (V)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
  if constexpr (sizeof(V) == 64 && sizeof(E) == 8) return (V)_mm512_fmadd_pd((__m512d)a, (__m512d)b, (__m512d)c);
#endif
#if defined(__FMA__)
  if constexpr (sizeof(V) == 32 && sizeof(E) == 4) return (V)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
  if constexpr (sizeof(V) == 32 && sizeof(E) == 8) return (V)_mm256_fmadd_pd((__m256d)a, (__m256d)b, (__m256d)c);
  if constexpr (sizeof(V) == 16 && sizeof(E) == 4) return (V)_mm_fmadd_ps((__m128)a, (__m128)b, (__m128)c);
  if constexpr (sizeof(V) == 16 && sizeof(E) == 8) return (V)_mm_fmadd_pd((__m128d)a, (__m128d)b, (__m128d)c);
#endif
  return a * b + c;
}

inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// Streaming stores only pay off when the output would not stay in cache anyway.
constexpr int64_t kStreamThresholdBytes = int64_t(8) << 20;

// Partial vector at p[0..k): the rest of the lanes are zero. Tails go through the same
// vector code as the body so that an element's result never depends on where it falls
// (chunk boundaries, alignment peel, strided gather): bitwise reproducible.
// With AVX-512 / AVX2 the tail is one masked load/store (masked-off lanes never touch memory,
// so no fault past the end); on the baseline level a memcpy of k elements, which GCC turns into a libc call for a
// run-time k: per-row tails (layer norm rows, preprocessing rows) pay that call on every row.
#if defined(__AVX2__) && !defined(__AVX512F__)
// Lanes [0, k) set (all bits) for AVX2 maskload/maskstore.
inline __m256i avx2_lane_mask32(int64_t k) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(int(k)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
inline __m256i avx2_lane_mask64(int64_t k) {
  return _mm256_cmpgt_epi64(_mm256_set1_epi64x(k), _mm256_setr_epi64x(0, 1, 2, 3));
}
#endif
template <class T>
inline typename Simd<T>::V load_partial(const T* p, int64_t k) {
  typename Simd<T>::V v{};
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    const __m512 r = _mm512_maskz_loadu_ps(__mmask16((1u << k) - 1u), reinterpret_cast<const float*>(p));
    std::memcpy(&v, &r, sizeof(v));
    return v;
  } else if constexpr (sizeof(T) == 8) {
    const __m512d r = _mm512_maskz_loadu_pd(__mmask8((1u << k) - 1u), reinterpret_cast<const double*>(p));
    std::memcpy(&v, &r, sizeof(v));
    return v;
  }
#elif defined(__AVX2__)
  if constexpr (sizeof(T) == 4) {
    const __m256 r = _mm256_maskload_ps(reinterpret_cast<const float*>(p), avx2_lane_mask32(k));
    std::memcpy(&v, &r, sizeof(v));
    return v;
  } else if constexpr (sizeof(T) == 8) {
    const __m256d r = _mm256_maskload_pd(reinterpret_cast<const double*>(p), avx2_lane_mask64(k));
    std::memcpy(&v, &r, sizeof(v));
    return v;
  }
#endif
  std::memcpy(&v, p, size_t(k) * sizeof(T));
  return v;
}
template <class T>
inline void store_partial(T* p, typename Simd<T>::V v, int64_t k) {
#if defined(__AVX512F__)
  if constexpr (sizeof(T) == 4) {
    __m512 r;
    std::memcpy(&r, &v, sizeof(r));
    _mm512_mask_storeu_ps(reinterpret_cast<float*>(p), __mmask16((1u << k) - 1u), r);
    return;
  } else if constexpr (sizeof(T) == 8) {
    __m512d r;
    std::memcpy(&r, &v, sizeof(r));
    _mm512_mask_storeu_pd(reinterpret_cast<double*>(p), __mmask8((1u << k) - 1u), r);
    return;
  }
#elif defined(__AVX2__)
  if constexpr (sizeof(T) == 4) {
    __m256 r;
    std::memcpy(&r, &v, sizeof(r));
    _mm256_maskstore_ps(reinterpret_cast<float*>(p), avx2_lane_mask32(k), r);
    return;
  } else if constexpr (sizeof(T) == 8) {
    __m256d r;
    std::memcpy(&r, &v, sizeof(r));
    _mm256_maskstore_pd(reinterpret_cast<double*>(p), avx2_lane_mask64(k), r);
    return;
  }
#endif
  std::memcpy(p, &v, size_t(k) * sizeof(T));
}

// y[i] = f(x[i]) over a contiguous range. With `stream`, the head is peeled up to the
// vector alignment of y and the body uses non-temporal stores.
template <class T, class VecOp>
inline void map_unary(const T* x, T* y, int64_t n, bool stream, VecOp op) {
  using S = Simd<T>;
  int64_t i = 0;
  if (stream) {
    int64_t mis = int64_t(reinterpret_cast<uintptr_t>(y) % kVecBytes);
    if (mis % int64_t(sizeof(T)) == 0 && mis != 0) {
      int64_t head = (kVecBytes - mis) / int64_t(sizeof(T));
      if (head > n) head = n;
      store_partial(y, op(load_partial(x, head)), head);
      i = head;
    }
    if ((reinterpret_cast<uintptr_t>(y + i) % kVecBytes) == 0) {
      for (; i + S::N <= n; i += S::N) S::stream(y + i, op(S::load(x + i)));
      stream_fence();
    }
  }
  for (; i + 2 * S::N <= n; i += 2 * S::N) {
    typename S::V a = S::load(x + i), b = S::load(x + i + S::N);
    S::store(y + i, op(a));
    S::store(y + i + S::N, op(b));
  }
  for (; i + S::N <= n; i += S::N) S::store(y + i, op(S::load(x + i)));
  if (i < n) store_partial(y + i, op(load_partial(x + i, n - i)), n - i);
}

// z[i] = f(a[i], b[i]) with the same tail/stream handling.
template <class T, class VecOp>
inline void map_binary(const T* a, const T* b, T* z, int64_t n, bool stream, VecOp op) {
  using S = Simd<T>;
  int64_t i = 0;
  if (stream) {
    int64_t mis = int64_t(reinterpret_cast<uintptr_t>(z) % kVecBytes);
    if (mis % int64_t(sizeof(T)) == 0 && mis != 0) {
      int64_t head = (kVecBytes - mis) / int64_t(sizeof(T));
      if (head > n) head = n;
      store_partial(z, op(load_partial(a, head), load_partial(b, head)), head);
      i = head;
    }
    if ((reinterpret_cast<uintptr_t>(z + i) % kVecBytes) == 0) {
      for (; i + S::N <= n; i += S::N) S::stream(z + i, op(S::load(a + i), S::load(b + i)));
      stream_fence();
    }
  }
  for (; i + S::N <= n; i += S::N) S::store(z + i, op(S::load(a + i), S::load(b + i)));
  if (i < n) store_partial(z + i, op(load_partial(a + i, n - i), load_partial(b + i, n - i)), n - i);
}

NK_KERNEL_NAMESPACE_END
