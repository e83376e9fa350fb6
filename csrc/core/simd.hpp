// Width-generic SIMD for kernel TUs, built on GCC/Clang vector extensions.
//
// The same source becomes SSE2 (16-byte), AVX2 (32-byte) or AVX-512 (64-byte) code
// depending on the -m flags of the TU that includes it; every definition lives in the
// per-level namespace (see common.hpp). Arithmetic, comparisons (lane masks of all-ones)
// and `cond ? a : b` work lane-wise on these types.
#pragma once
#include <cstring>
#include <type_traits>
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

// Forced inlining, for loop bodies written as lambdas or functors and called from several sites
// (full vectors, head, tail): inlined, the compiler folds k == N into plain vector loads/stores,
// and keeps the vectors in registers (GCC left AdamCore::operator() out of line, its vectors
// passed through memory: 0.35 -> 0.64 ns per element in cache, measured).
#define NK_AI __attribute__((always_inline))

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

// a * b + c rounded once at every level, for float32 (kernels whose bits must not depend on the
// level, e.g. stochastically rounded optimizer updates): fmadd where the level has FMA; without it
// (the baseline) the product exactly in double (24 + 24 bits), the sum rounded to odd in double
// (round to nearest, then, if TwoSum's error term is not zero and the last bit is even, one ulp
// toward the exact sum), then to float32 -- the correctly rounded fma, since 53 >= 2 * 24 + 2
// (Boldo & Melquiond, "Emulation of FMA and correctly rounded sums: proved algorithms using
// rounding to odd", IEEE Trans. Computers 57(4), 2008). float64 keeps fmadd's two roundings there.
template <class V> inline V fmadd_once(V a, V b, V c) {
#if defined(__AVX512F__) || defined(__FMA__)
  return fmadd(a, b, c);
#else
  using E = __typeof__(a[0]);
  if constexpr (sizeof(E) != 4) {
    return fmadd(a, b, c);
  } else {
    constexpr int n = int(sizeof(V) / 4);
    typedef double D __attribute__((vector_size(n * 8)));
    typedef int64_t L __attribute__((vector_size(n * 8)));
    const D p = __builtin_convertvector(a, D) * __builtin_convertvector(b, D);  // exact
    const D cd = __builtin_convertvector(c, D);
    const D s = p + cd;
    const D bb = s - p;
    const D e = (p - (s - bb)) + (cd - bb);  // TwoSum: s + e == p + c exactly (s finite)
    L sb;
    std::memcpy(&sb, &s, sizeof(sb));
    L eb;
    std::memcpy(&eb, &e, sizeof(eb));
    const L inexact = (e != 0) & (s - s == 0) & ((sb & 1) == 0);  // finite s with an even last bit
    sb = inexact ? ((eb ^ sb) >= 0 ? sb + 1 : sb - 1) : sb;        // e's sign: away from or toward zero
    D r;
    std::memcpy(&r, &sb, sizeof(r));
    return __builtin_convertvector(r, V);
  }
#endif
}

inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// Streaming stores only pay off when the output would not stay in cache anyway.
constexpr int64_t kStreamThresholdBytes = int64_t(8) << 20;

// Software prefetch of a streamed map's input 4 KiB ahead, into L2 (prefetcht1; used by the
// elementwise maps below and by layer norm's streamed rows, cpu/normalization.cpp). A map whose body
// computes (tanh, sigmoid: ~20 vector operations per register) consumes its input too slowly for
// the hardware prefetchers of a many-core Xeon to keep enough lines in flight from DRAM: on a
// 2-core Xeon VM (480 MB L3 reported) bfloat16 tanh over 64M elements ran at 0.48 ns per element
// from DRAM against 0.16 from L3. With this prefetch it runs at 0.14 (float32 tanh 0.72 -> 0.23,
// bf16 sigmoid 0.53 -> 0.16), while pure copies (ReLU float32) stay at 0.16-0.20. prefetchnta
// made the float32 ReLU 2.5x slower there; 2 and 8 KiB were no better than 4. A prefetch never
// faults, so an address past the end of the input is harmless (formed as an integer: no pointer
// arithmetic beyond the array).
template <class T> inline void prefetch_stream_input(const T* p) {
  __builtin_prefetch(reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(p) + 4096), 0, 2);
}

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

// ------------------------------------------------------------------ 16-bit storage
// float16 and bfloat16 elements are loaded into float32 vectors (Simd<float>::N lanes from half a
// register of memory), computed on in float32 and rounded back to nearest even on store. Every
// level gives the same bits for every input (tests/test_core.py checks all 65536 16-bit patterns
// and float32 patterns at every rounding boundary, at every level):
//   bfloat16 -> float32: exact (the 16 bits become the high half).
//   float32 -> bfloat16: round to nearest even on the bit pattern (u + 0x7FFF + lsb) >> 16, which is
//     also right for subnormals and overflows to inf past the largest bfloat16; NaN keeps its sign
//     and high payload and gets the quiet bit (u >> 16 | 0x40). That is what AVX-512 BF16's
//     VCVTNEPS2BF16 computes, except that it reads subnormal inputs as zero: with the instruction,
//     the lanes holding a float32 subnormal take the integer result instead.
//   float16 <-> float32: F16C / AVX-512F VCVTPH2PS / VCVTPS2PH (round to nearest even, NaN quieted
//     with its high payload kept); the baseline computes the same with integer and float32
//     operations (F. Giesen's float_to_half_fast3_rtne / half_to_float_fast5,
//     https://gist.github.com/rygorous/2156668), exact in the default rounding mode and with
//     flush-to-zero / denormals-are-zero set (every float32 it rounds through is normal).
typedef uint16_t H16V __attribute__((vector_size(kVecBytes / 2), aligned(kVecBytes / 2)));  // Simd<float>::N 16-bit lanes
typedef uint32_t U32V __attribute__((vector_size(kVecBytes), aligned(kVecBytes)));

inline U32V bits_of(Simd<float>::V v) { return (U32V)v; }
inline Simd<float>::V float_of(U32V u) { return (Simd<float>::V)u; }

// float32 bits -> bfloat16 bits (in the low half of each lane), portable integer rounding.
// NaN is found by a float compare (one instruction; the integer test |u| > 0x7F800000 is unsigned,
// three at the AVX2 level, which has no unsigned compare): same lanes, same bits.
// The rounded bfloat16 in the high half of each lane (low half garbage), for a non-NaN u.
inline U32V bf16_round_high(U32V u) { return u + 0x7FFFu + ((u >> 16) & 1u); }
inline U32V bf16_round_bits(U32V u) {
  const U32V rounded = bf16_round_high(u) >> 16;
  const U32V quiet_nan = (u >> 16) | 0x40u;
  const Simd<float>::V f = float_of(u);
  return f != f ? quiet_nan : rounded;
}

// float32 bits -> float16 bits (low half), portable.
inline U32V f16_round_bits(U32V u) {
  const U32V sign = u & 0x80000000u;
  const U32V a = u ^ sign;
  // normal float16: rebias the exponent (127 -> 15) and round the 13 dropped bits to nearest even;
  // a carry out of the mantissa moves to the next binade, out of the largest one to inf.
  const U32V normal = (a + 0xC8000000u + 0xFFFu + ((a >> 13) & 1u)) >> 13;
  // below 2^-14 (subnormal float16 or zero): adding 0.5 puts the 2^-24 unit of float16 subnormals
  // at the last place of the float32 sum, so the addition rounds it to nearest even.
  const U32V sub = bits_of(float_of(a) + 0.5f) - 0x3F000000u;
  U32V r = a < 0x38800000u ? sub : normal;
  r = a >= 0x47800000u ? U32V{} + 0x7C00u : r;                      // 2^16 and above, inf: inf
  r = a > 0x7F800000u ? (0x7E00u | ((a >> 13) & 0x3FFu)) : r;       // NaN: quiet, high payload kept
  return r | (sign >> 16);
}

// float16 bits (low half) -> float32 bits, portable.
inline U32V f16_widen_bits(U32V h) {
  const U32V exp_inf = U32V{} + (0x7C00u << 13);
  U32V o = (h & 0x7FFFu) << 13;
  const U32V e = o & exp_inf;
  o += (127u - 15u) << 23;
  o = e == exp_inf ? o + ((128u - 16u) << 23) : o;                                      // inf / NaN
  const U32V sub = bits_of(float_of(o + (1u << 23)) - float_of(U32V{} + (113u << 23)));  // zero / subnormal: exact
  o = e == 0u ? sub : o;
  o = (e == exp_inf) & ((h & 0x3FFu) != 0u) ? o | 0x400000u : o;                        // NaN: quiet
  return o | ((h & 0x8000u) << 16);
}

// 16-bit lanes zero-extended to 32 bits, and 32-bit lanes holding values below 2^16 packed to 16 bits
// (__builtin_convertvector gives GCC 12 shuffle sequences for these at every level).
inline U32V widen_u16(H16V h) {
  U32V u;
#if defined(__AVX512F__)
  __m256i r;
  std::memcpy(&r, &h, 32);
  const __m512i w = _mm512_maskz_cvtepu16_epi32(__mmask16(0xFFFF), r);  // maskz: GCC 12 warning, as scale_pow2
  std::memcpy(&u, &w, 64);
#elif defined(__AVX2__)
  __m128i r;
  std::memcpy(&r, &h, 16);
  const __m256i w = _mm256_cvtepu16_epi32(r);
  std::memcpy(&u, &w, 32);
#elif defined(__SSE2__)
  __m128i r = _mm_setzero_si128();
  std::memcpy(&r, &h, 8);
  const __m128i w = _mm_unpacklo_epi16(r, _mm_setzero_si128());
  std::memcpy(&u, &w, 16);
#else
  u = __builtin_convertvector(h, U32V);
#endif
  return u;
}
inline H16V narrow_u32(U32V u) {
  H16V h;
#if defined(__AVX512F__)
  __m512i r;
  std::memcpy(&r, &u, 64);
  const __m256i n = _mm512_maskz_cvtepi32_epi16(__mmask16(0xFFFF), r);
  std::memcpy(&h, &n, 32);
#elif defined(__AVX2__)
  __m256i r;
  std::memcpy(&r, &u, 32);
  const __m128i n = _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256(r, 1));  // < 2^16: exact
  std::memcpy(&h, &n, 16);
#elif defined(__SSE2__)
  __m128i r;
  std::memcpy(&r, &u, 16);
  // SSE2 packs with signed saturation only: sign-extend the low 16 bits first, then it is exact
  const __m128i n = _mm_packs_epi32(_mm_srai_epi32(_mm_slli_epi32(r, 16), 16), _mm_setzero_si128());
  std::memcpy(&h, &n, 8);
#else
  h = __builtin_convertvector(u, H16V);
#endif
  return h;
}

inline Simd<float>::V widen_bf16(H16V h) { return float_of(widen_u16(h) << 16); }

inline H16V narrow_bf16(Simd<float>::V v) {
#if defined(__AVX512BF16__)
  static_assert(kVecBytes == 64, "AVX-512 TUs use 64-byte vectors");
  if (g_use_avx512_bf16) {
    __m512 f;
    std::memcpy(&f, &v, 64);
    const __m256bh r = _mm512_cvtneps_pbh(f);
    __m256i out;
    std::memcpy(&out, &r, 32);
    const __mmask16 subnormal = _mm512_fpclass_ps_mask(f, 0x20);  // 0x20: float32 subnormal
    if (__builtin_expect(subnormal != 0, 0)) {
      const H16V fix = narrow_u32(bf16_round_bits(bits_of(v)));
      __m256i fx;
      std::memcpy(&fx, &fix, 32);
      out = _mm256_mask_mov_epi16(out, subnormal, fx);
    }
    H16V h;
    std::memcpy(&h, &out, 32);
    return h;
  }
#endif
  return narrow_u32(bf16_round_bits(bits_of(v)));
}

inline Simd<float>::V widen_f16(H16V h) {
  Simd<float>::V v;
#if defined(__AVX512F__)
  __m256i r;
  std::memcpy(&r, &h, 32);
  const __m512 f = _mm512_maskz_cvtph_ps(__mmask16(0xFFFF), r);  // maskz: see scale_pow2 (GCC 12 warning)
  std::memcpy(&v, &f, 64);
#elif defined(__F16C__) && defined(__AVX2__)
  __m128i r;
  std::memcpy(&r, &h, 16);
  const __m256 f = _mm256_cvtph_ps(r);
  std::memcpy(&v, &f, 32);
#else
  v = float_of(f16_widen_bits(widen_u16(h)));
#endif
  return v;
}

inline H16V narrow_f16(Simd<float>::V v) {
  H16V h;
#if defined(__AVX512F__)
  __m512 f;
  std::memcpy(&f, &v, 64);
  const __m256i r = _mm512_maskz_cvtps_ph(__mmask16(0xFFFF), f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  std::memcpy(&h, &r, 32);
#elif defined(__F16C__) && defined(__AVX2__)
  __m256 f;
  std::memcpy(&f, &v, 32);
  const __m128i r = _mm256_cvtps_ph(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  std::memcpy(&h, &r, 16);
#else
  h = narrow_u32(f16_round_bits(bits_of(v)));
#endif
  return h;
}

// Raw 16-bit vectors: whole, partial (lanes [0, k), the rest zero; masked-off lanes never touch
// memory), streamed (p aligned to kVecBytes / 2).
inline H16V load_h16(const void* p) { H16V h; std::memcpy(&h, p, sizeof(h)); return h; }
inline void store_h16(void* p, H16V h) { std::memcpy(p, &h, sizeof(h)); }
inline H16V load_h16_partial(const void* p, int64_t k) {
  H16V h{};
#if defined(__AVX512F__)
  const __m256i r = _mm256_maskz_loadu_epi16(__mmask16((1u << k) - 1u), p);
  std::memcpy(&h, &r, 32);
#else
  std::memcpy(&h, p, size_t(k) * 2);
#endif
  return h;
}
inline void store_h16_partial(void* p, H16V h, int64_t k) {
#if defined(__AVX512F__)
  __m256i r;
  std::memcpy(&r, &h, 32);
  _mm256_mask_storeu_epi16(p, __mmask16((1u << k) - 1u), r);
#else
  std::memcpy(p, &h, size_t(k) * 2);
#endif
}
inline void stream_h16(void* p, H16V h) {
#if defined(__AVX512F__)
  __m256i r; std::memcpy(&r, &h, 32); _mm256_stream_si256(reinterpret_cast<__m256i*>(p), r);
#elif defined(__AVX2__)
  __m128i r; std::memcpy(&r, &h, 16); _mm_stream_si128(reinterpret_cast<__m128i*>(p), r);
#elif defined(__SSE2__)
  long long r; std::memcpy(&r, &h, 8); _mm_stream_si64(reinterpret_cast<long long*>(p), r);
#else
  store_h16(p, h);
#endif
}

// Storage<T>: vectors of compute type C (float for the 16-bit types, T otherwise) read from and
// written to memory holding T. N lanes per vector, kBytes of memory per vector.
template <class T> struct Storage {
  using C = T;
  using V = typename Simd<T>::V;
  static constexpr int N = Simd<T>::N;
  static constexpr int kBytes = kVecBytes;
  static V load(const T* p) { return Simd<T>::load(p); }
  static void store(T* p, V v) { Simd<T>::store(p, v); }
  static V load_partial(const T* p, int64_t k) { return ::nk::NK_ISA_NS::load_partial<T>(p, k); }
  static void store_partial(T* p, V v, int64_t k) { ::nk::NK_ISA_NS::store_partial<T>(p, v, k); }
  static void stream(T* p, V v) { Simd<T>::stream(p, v); }
};
template <class H, Simd<float>::V (*Widen)(H16V), H16V (*Narrow)(Simd<float>::V)> struct Storage16 {
  using C = float;
  using V = Simd<float>::V;
  static constexpr int N = Simd<float>::N;
  static constexpr int kBytes = kVecBytes / 2;
  static V load(const H* p) { return Widen(load_h16(p)); }
  static void store(H* p, V v) { store_h16(p, Narrow(v)); }
  static V load_partial(const H* p, int64_t k) { return Widen(load_h16_partial(p, k)); }
  static void store_partial(H* p, V v, int64_t k) { store_h16_partial(p, Narrow(v), k); }
  static void stream(H* p, V v) { stream_h16(p, Narrow(v)); }
  static V round(V v) { return Widen(Narrow(v)); }  // v rounded to H, in registers
};
template <> struct Storage<bfloat16_t> : Storage16<bfloat16_t, widen_bf16, narrow_bf16> {};
template <> struct Storage<float16_t> : Storage16<float16_t, widen_f16, narrow_f16> {};

// ------------------------------------------------------------------ bfloat16 pairs
// A full register of bfloat16 (2N elements) as two float32 vectors without a shuffle: each 32-bit
// word of memory holds element 2j in its low half and 2j + 1 in its high half, and bfloat16 ->
// float32 is "the 16 bits in the high half", so the even elements are word << 16 and the odd ones
// word & 0xFFFF0000 (one integer operation each, against a zero-extension shuffle and a shift per
// N elements for Storage::load). Code that does not care which lane holds which element (the
// elementwise kernels, sums) uses it. Rounding back gives each element the bits
// narrow_bf16 gives it: with AVX-512 BF16 one VCVTNE2PS2BF16 for both vectors and one word
// permutation back to memory order (the rare pair holding a float32 subnormal takes the integer
// rounding, as narrow_bf16); otherwise the integer rounding of both and one shift-or.
struct Bf16Pair {
  Simd<float>::V even, odd;
};
// Whether a lane of a or b is NaN.
inline bool any_unordered(Simd<float>::V a, Simd<float>::V b) {
#if defined(__AVX512F__)
  return _mm512_cmp_ps_mask((__m512)a, (__m512)b, _CMP_UNORD_Q) != 0;
#elif defined(__AVX2__)
  return _mm256_movemask_ps(_mm256_cmp_ps((__m256)a, (__m256)b, _CMP_UNORD_Q)) != 0;
#elif defined(__SSE2__)
  return _mm_movemask_ps(_mm_cmpunord_ps((__m128)a, (__m128)b)) != 0;
#else
  for (int i = 0; i < Simd<float>::N; ++i)
    if (a[i] != a[i] || b[i] != b[i]) return true;
  return false;
#endif
}
constexpr int kBf16PairElems = 2 * Simd<float>::N;  // elements (and 2-byte words) per pair: kVecBytes of memory
inline Bf16Pair load_bf16_pair(const bfloat16_t* p) {
  U32V w;
  std::memcpy(&w, p, sizeof(w));
  return {float_of(w << 16), float_of(w & 0xFFFF0000u)};
}
// Elements [0, k) of p (k < kBf16PairElems), the rest zero; masked-off elements never touch memory.
inline Bf16Pair load_bf16_pair_partial(const bfloat16_t* p, int64_t k) {
  U32V w{};
#if defined(__AVX512F__)
  const __m512i r = _mm512_maskz_loadu_epi16(__mmask32((uint64_t(1) << k) - 1u), p);
  std::memcpy(&w, &r, sizeof(w));
#else
  std::memcpy(&w, p, size_t(k) * 2);
#endif
  return {float_of(w << 16), float_of(w & 0xFFFF0000u)};
}
inline U32V narrow_bf16_pair(Bf16Pair v) {
#if defined(__AVX512BF16__)
  if (g_use_avx512_bf16) {
    __m512 e, o;
    std::memcpy(&e, &v.even, 64);
    std::memcpy(&o, &v.odd, 64);
    // fpclass 0x20: float32 subnormal (read as zero by the instruction). kortestz tests both masks
    // in one mask instruction (`m1 | m2` went through two kmovs and a scalar or).
    if (__builtin_expect(_kortestz_mask16_u8(_mm512_fpclass_ps_mask(e, 0x20), _mm512_fpclass_ps_mask(o, 0x20)), 1)) {
      const __m512i r = (__m512i)_mm512_cvtne2ps_pbh(o, e);  // words [0, 16): even, [16, 32): odd
      const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                             22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
      const __m512i w = _mm512_permutexvar_epi16(order, r);
      U32V out;
      std::memcpy(&out, &w, 64);
      return out;
    }
  }
#endif
  // Integer rounding. One unordered compare tells whether either vector holds a NaN; without one
  // (the rule) both round without bf16_round_bits' NaN select. Same bits either way.
  const U32V e = bits_of(v.even), o = bits_of(v.odd);
  if (__builtin_expect(!any_unordered(v.even, v.odd), 1)) {
#if defined(__AVX2__) && !defined(__AVX512F__)
    // AVX2 rounds in 16-bit words: two blends gather the high words h (the truncated results, in
    // memory order) and the low words l; the rounding carry into h is bit 16 of l + 0x7FFF + (h & 1),
    // which VPAVGW computes without widening: avg(l, 0x7FFE + (h & 1)) = (l + 0x7FFF + (h & 1)) >> 1,
    // its top bit. h + carry cannot wrap (h = 0xFFFF is a NaN). 11 vector operations per pair
    // (compare and mask move included) instead of 13 in 32-bit lanes; the same bits as
    // bf16_round_high for all 2^32 - 2^24 + 2 non-NaN float32 patterns (checked exhaustively).
    const __m256i ew = (__m256i)e, ow = (__m256i)o;
    const __m256i h = _mm256_blend_epi16(_mm256_srli_epi32(ew, 16), ow, 0xAA);
    const __m256i l = _mm256_blend_epi16(ew, _mm256_slli_epi32(ow, 16), 0xAA);
    const __m256i bias = _mm256_or_si256(_mm256_and_si256(h, _mm256_set1_epi16(1)), _mm256_set1_epi16(0x7FFE));
    const __m256i carry = _mm256_srli_epi16(_mm256_avg_epu16(l, bias), 15);
    return (U32V)_mm256_add_epi16(h, carry);
#else
    // The odd words round straight into the high halves: 13 vector operations per pair at AVX2
    // width instead of 18.
    return (bf16_round_high(e) >> 16) | (bf16_round_high(o) & 0xFFFF0000u);
#endif
  }
  return bf16_round_bits(e) | (bf16_round_bits(o) << 16);
}
inline void store_bf16_pair(bfloat16_t* p, Bf16Pair v) {
  const U32V w = narrow_bf16_pair(v);
  std::memcpy(p, &w, sizeof(w));
}
inline void store_bf16_pair_partial(bfloat16_t* p, Bf16Pair v, int64_t k) {
  const U32V w = narrow_bf16_pair(v);
#if defined(__AVX512F__)
  __m512i r;
  std::memcpy(&r, &w, 64);
  _mm512_mask_storeu_epi16(p, __mmask32((uint64_t(1) << k) - 1u), r);
#else
  std::memcpy(p, &w, size_t(k) * 2);
#endif
}
// p aligned to kVecBytes.
inline void stream_bf16_pair(bfloat16_t* p, Bf16Pair v) {
  const U32V w = narrow_bf16_pair(v);
  Simd<float>::stream(reinterpret_cast<float*>(p), float_of(w));
}
template <class T> using compute_t = compute_of_t<T>;
static_assert(sizeof(compute_t<bfloat16_t>) == sizeof(Storage<bfloat16_t>::C), "one compute type per storage type");

// One element through the vector conversions (the same bits as a vector lane).
template <class T> inline compute_t<T> load_one(const T* p) { return Storage<T>::load_partial(p, 1)[0]; }
template <class T> inline void store_one(T* p, compute_t<T> v) {
  Storage<T>::store_partial(p, Simd<compute_t<T>>::splat(v), 1);
}

// bfloat16 elementwise maps on pairs (a full register of elements per step, no shuffles; each
// element's bits are those of the one-vector path): z[i] = f(a[i], b[i]) for the vectors of one
// pair, `b` == nullptr for unary maps. With `stream`, the head is peeled up to a register's
// alignment of z and the body uses non-temporal stores.
template <class VecOp>
inline void map_bf16_pairs(const bfloat16_t* a, const bfloat16_t* b, bfloat16_t* z, int64_t n, bool stream, VecOp op) {
  constexpr int64_t P = kBf16PairElems;
  auto f = [&](Bf16Pair u, Bf16Pair v) { return Bf16Pair{op(u.even, v.even), op(u.odd, v.odd)}; };
  const bfloat16_t* bb = b ? b : a;
  int64_t i = 0;
  if (stream) {
    const int64_t mis = int64_t(reinterpret_cast<uintptr_t>(z) % kVecBytes);
    if (mis % 2 == 0 && mis != 0) {
      const int64_t head = (kVecBytes - mis) / 2 < n ? (kVecBytes - mis) / 2 : n;
      store_bf16_pair_partial(z, f(load_bf16_pair_partial(a, head), load_bf16_pair_partial(bb, head)), head);
      i = head;
    }
    if (reinterpret_cast<uintptr_t>(z + i) % kVecBytes == 0) {
      for (; i + P <= n; i += P) {
        prefetch_stream_input(a + i);
        if (b) prefetch_stream_input(b + i);
        stream_bf16_pair(z + i, f(load_bf16_pair(a + i), load_bf16_pair(bb + i)));
      }
      stream_fence();
    }
  }
  for (; i + P <= n; i += P) store_bf16_pair(z + i, f(load_bf16_pair(a + i), load_bf16_pair(bb + i)));
  if (i < n)
    store_bf16_pair_partial(z + i, f(load_bf16_pair_partial(a + i, n - i), load_bf16_pair_partial(bb + i, n - i)), n - i);
}

// y[i] = f(x[i]) over a contiguous range; f works on vectors of compute_t<T>. With `stream`, the
// head is peeled up to the alignment of one vector's stores into y and the body uses non-temporal
// stores.
template <class T, class VecOp>
inline void map_unary(const T* x, T* y, int64_t n, bool stream, VecOp op) {
  if constexpr (std::is_same_v<T, bfloat16_t>) {
    using V = Simd<float>::V;
    return map_bf16_pairs(x, nullptr, y, n, stream, [&](V u, V) { return op(u); });
  }
  using St = Storage<T>;
  constexpr int64_t N = St::N;
  int64_t i = 0;
  if (stream) {
    int64_t mis = int64_t(reinterpret_cast<uintptr_t>(y) % St::kBytes);
    if (mis % int64_t(sizeof(T)) == 0 && mis != 0) {
      int64_t head = (St::kBytes - mis) / int64_t(sizeof(T));
      if (head > n) head = n;
      St::store_partial(y, op(St::load_partial(x, head)), head);
      i = head;
    }
    if ((reinterpret_cast<uintptr_t>(y + i) % St::kBytes) == 0) {
      for (; i + N <= n; i += N) {
        prefetch_stream_input(x + i);
        St::stream(y + i, op(St::load(x + i)));
      }
      stream_fence();
    }
  }
  for (; i + 2 * N <= n; i += 2 * N) {
    typename St::V a = St::load(x + i), b = St::load(x + i + N);
    St::store(y + i, op(a));
    St::store(y + i + N, op(b));
  }
  for (; i + N <= n; i += N) St::store(y + i, op(St::load(x + i)));
  if (i < n) St::store_partial(y + i, op(St::load_partial(x + i, n - i)), n - i);
}

// z[i] = f(a[i], b[i]) with the same tail/stream handling.
template <class T, class VecOp>
inline void map_binary(const T* a, const T* b, T* z, int64_t n, bool stream, VecOp op) {
  if constexpr (std::is_same_v<T, bfloat16_t>) return map_bf16_pairs(a, b, z, n, stream, op);
  using St = Storage<T>;
  constexpr int64_t N = St::N;
  int64_t i = 0;
  if (stream) {
    int64_t mis = int64_t(reinterpret_cast<uintptr_t>(z) % St::kBytes);
    if (mis % int64_t(sizeof(T)) == 0 && mis != 0) {
      int64_t head = (St::kBytes - mis) / int64_t(sizeof(T));
      if (head > n) head = n;
      St::store_partial(z, op(St::load_partial(a, head), St::load_partial(b, head)), head);
      i = head;
    }
    if ((reinterpret_cast<uintptr_t>(z + i) % St::kBytes) == 0) {
      for (; i + N <= n; i += N) {
        prefetch_stream_input(a + i);
        prefetch_stream_input(b + i);
        St::stream(z + i, op(St::load(a + i), St::load(b + i)));
      }
      stream_fence();
    }
  }
  for (; i + N <= n; i += N) St::store(z + i, op(St::load(a + i), St::load(b + i)));
  if (i < n) St::store_partial(z + i, op(St::load_partial(a + i, n - i), St::load_partial(b + i, n - i)), n - i);
}

NK_KERNEL_NAMESPACE_END
