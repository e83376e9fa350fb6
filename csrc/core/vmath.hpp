// Vectorised elementary functions for kernel TUs (float32 and float64), branch-free.
//
// exp:   Cody-Waite reduction x = n*ln2 + r, |r| <= ln2/2, e^r by its Taylor polynomial
//        (degree 7 for float, 13 for double: truncation < 0.1 ulp), then 2^n applied as
//        two factors 2^(n/2) * 2^(n - n/2) so that results in the subnormal range and
//        overflow to +inf come out right without special cases.
// expm1: same reduction; e^r - 1 = r + r^2 * q(r) keeps full relative accuracy near 0.
// sigmoid(x) = 1/(1+e) for x >= 0 and e/(1+e) for x < 0, with e = exp(-|x|) <= 1, so it
//        never overflows and keeps relative accuracy for very negative x.
// tanh(x) = sign(x) * -u/(2+u), u = expm1(-2|x|) in (-1, 0]: accurate at 0, exactly 1 at
//        large |x|, never inf/inf. For 16-bit storage a rational approximation (vtanh_16bit),
//        and at AVX-512 sigmoid with a shorter exponential (vsigmoid_16bit).
// Measured accuracy against a float64/longdouble reference is asserted in
// tests/test_activations.py (ULP bounds documented in README).
#pragma once
#include "core/simd.hpp"

NK_KERNEL_NAMESPACE_BEGIN

template <class T> struct MathConst;
template <> struct MathConst<float> {
  static constexpr float log2e = 1.44269504088896341f;
  static constexpr float ln2_hi = 0.693145751953125f;        // 12 significant bits: n*ln2_hi exact
  static constexpr float ln2_lo = 1.428606765330187045e-06f;
  static constexpr float round_magic = 12582912.0f;          // 1.5 * 2^23
  static constexpr float exp_lo = -104.0f, exp_hi = 89.0f;    // e^lo underflows to 0, e^hi overflows
  static constexpr int mant_bits = 23, bias = 127;
  static constexpr int taylor_degree = 7;
  static constexpr float tanh_clamp = -20.0f;                // tanh(10) rounds to 1 in float
};
template <> struct MathConst<double> {
  static constexpr double log2e = 1.4426950408889634074;
  static constexpr double ln2_hi = 6.93147180369123816490e-01;  // fdlibm split
  static constexpr double ln2_lo = 1.90821492927058770002e-10;
  static constexpr double round_magic = 6755399441055744.0;    // 1.5 * 2^52
  static constexpr double exp_lo = -746.0, exp_hi = 710.0;
  static constexpr int mant_bits = 52, bias = 1023;
  static constexpr int taylor_degree = 13;
  static constexpr double tanh_clamp = -100.0;                 // tanh(50) rounds to 1 in double
};

template <class T> inline typename Simd<T>::V vabs(typename Simd<T>::V x) {
  using S = Simd<T>;
  using I = typename S::I;
  const I mask = I{} + ~(typename IntOf<T>::type(1) << (sizeof(T) * 8 - 1));
  return S::as_float(S::as_int(x) & mask);
}

template <class T> inline typename Simd<T>::V vcopysign(typename Simd<T>::V mag, typename Simd<T>::V sgn) {
  using S = Simd<T>;
  using I = typename S::I;
  const I sign_bit = I{} + (typename IntOf<T>::type(1) << (sizeof(T) * 8 - 1));
  return S::as_float((S::as_int(mag) & ~sign_bit) | (S::as_int(sgn) & sign_bit));
}

// 2^k for integer-valued k in [-bias+1, bias] (as floating vector).
template <class T> inline typename Simd<T>::V pow2i(typename Simd<T>::V k) {
  using S = Simd<T>;
  using C = MathConst<T>;
  typename S::I ki = __builtin_convertvector(k, typename S::I);
  return S::as_float((ki + C::bias) << C::mant_bits);
}

// Round to nearest integer (ties to even) for |x| < 2^(mant_bits-1): the add/sub trick.
template <class T> inline typename Simd<T>::V round_int(typename Simd<T>::V x) {
  using C = MathConst<T>;
  // Without -ffast-math the compiler may not fold (x+m)-m, so this rounds as intended.
  return (x + C::round_magic) - C::round_magic;
}

// Reduce x = n*ln2 + r. Returns r, sets n.
template <class T> inline typename Simd<T>::V reduce_ln2(typename Simd<T>::V x, typename Simd<T>::V& n) {
  using C = MathConst<T>;
  n = round_int<T>(x * C::log2e);
  return (x - n * C::ln2_hi) - n * C::ln2_lo;
}

template <class T> constexpr T inv_factorial(int k) {
  double f = 1;  // exact in double up to 18!
  for (int i = 2; i <= k; ++i) f *= i;
  return T(1.0 / f);
}

// (e^r - 1 - r) / r^2 for |r| <= ln2/2: sum_{k>=2} r^(k-2)/k! up to the type's degree.
template <class T> inline typename Simd<T>::V expm1_tail(typename Simd<T>::V r) {
  using C = MathConst<T>;
  // Horner from the top over the coefficients 1/k!, k = degree..2 (folded at compile time).
  typename Simd<T>::V q = Simd<T>::splat(inv_factorial<T>(C::taylor_degree));
  for (int k = C::taylor_degree - 1; k >= 2; --k) q = q * r + inv_factorial<T>(k);
  return q;
}

// p * 2^n for integer-valued n in [-2*bias, 2*bias]: two exact power-of-two factors, so
// subnormal results round once and overflow gives +inf. AVX-512 has this as one instruction.
template <class T> inline typename Simd<T>::V scale_pow2(typename Simd<T>::V p, typename Simd<T>::V n) {
#if defined(__AVX512F__)
  static_assert(kVecBytes == 64, "AVX-512 TUs use 64-byte vectors");
  typename Simd<T>::V r;
  if constexpr (sizeof(T) == 4) {
    __m512 a, b;
    std::memcpy(&a, &p, 64);
    std::memcpy(&b, &n, 64);
    __m512 c = _mm512_maskz_scalef_ps(__mmask16(0xFFFF), a, b);  // maskz: no _mm512_undefined (GCC 12 -Wmaybe-uninitialized)
    std::memcpy(&r, &c, 64);
  } else {
    __m512d a, b;
    std::memcpy(&a, &p, 64);
    std::memcpy(&b, &n, 64);
    __m512d c = _mm512_maskz_scalef_pd(__mmask8(0xFF), a, b);
    std::memcpy(&r, &c, 64);
  }
  return r;
#else
  using S = Simd<T>;
  typename S::V nn = n != n ? S::splat(0) : n;  // keep the integer conversion defined for NaN
  typename S::V n1 = round_int<T>(nn * T(0.5));
  return (p * pow2i<T>(n1)) * pow2i<T>(nn - n1);
#endif
}

template <class T> inline typename Simd<T>::V vexp(typename Simd<T>::V x) {
  using S = Simd<T>;
  using C = MathConst<T>;
  typename S::V xc = x < C::exp_lo ? S::splat(C::exp_lo) : x;  // NaN compares false: stays NaN
  xc = xc > C::exp_hi ? S::splat(C::exp_hi) : xc;
  typename S::V n;
  typename S::V r = reduce_ln2<T>(xc, n);
  typename S::V p = (r + r * r * expm1_tail<T>(r)) + T(1);
  return scale_pow2<T>(p, n);
}

// expm1 for x in [clamp, 0]: used by tanh only, where that range is all we need.
template <class T> inline typename Simd<T>::V vexpm1_nonpos(typename Simd<T>::V x) {
  using S = Simd<T>;
  typename S::V n;
  typename S::V r = reduce_ln2<T>(x, n);
  typename S::V em1 = r + r * r * expm1_tail<T>(r);  // e^r - 1
  typename S::V nsafe = n != n ? S::splat(0) : n;
  typename S::V two_n = pow2i<T>(nsafe);
  // 2^n e^r - 1; for n == 0 this is exactly em1 (1*em1 + 0), so no special case is needed.
  return two_n * em1 + (two_n - T(1));
}

template <class T> inline typename Simd<T>::V vsigmoid(typename Simd<T>::V x) {
  using S = Simd<T>;
  typename S::V e = vexp<T>(-vabs<T>(x));
  typename S::V pos = T(1) / (e + T(1));
  return x >= T(0) ? pos : e * pos;
}

template <class T> inline typename Simd<T>::V vtanh(typename Simd<T>::V x) {
  using S = Simd<T>;
  using C = MathConst<T>;
  typename S::V y = T(-2) * vabs<T>(x);
  y = y < C::tanh_clamp ? S::splat(C::tanh_clamp) : y;
  typename S::V u = vexpm1_nonpos<T>(y);
  typename S::V t = -u / (u + T(2));
  return vcopysign<T>(t, x);
}

// num / den, den normal, for results rounded to a 16-bit type: on AVX-512 num * rcp14(den)
// (relative error below 2^-14 = 6.1e-5, a quarter of float16's half ulp: the callers' budgets
// below include it) at a fraction of a division's cost (on a 2-core Xeon VM: bfloat16 tanh in
// cache 0.25 -> 0.235 ns per element per thread, over 64M from DRAM with 2 threads 0.138 -> 0.131;
// sigmoid 64M 37.2 -> 35.7 ms before the input prefetch of core/simd.hpp). The other levels divide,
// as before (rcpps is good to only 1.5 * 2^-12).
inline Simd<float>::V vdiv_16bit(Simd<float>::V num, Simd<float>::V den) {
#if defined(__AVX512F__)
  // (the zero-masked form: GCC 12 warns about _mm512_rcp14_ps's undefined pass-through operand)
  return num * (Simd<float>::V)_mm512_maskz_rcp14_ps(__mmask16(0xFFFF), (__m512)den);
#else
  return num / den;
#endif
}

// min(max(x, lo), hi) with NaN kept: x86's maxps/minps return their second operand when either is
// NaN, so the bound goes first. One instruction per bound where `x < lo ? lo : x` compiles to a
// compare and a blend (GCC does not fold it without -ffinite-math-only); -0 and +0 pass as they are.
inline Simd<float>::V vclamp_keep_nan(Simd<float>::V x, float lo, float hi) {
#if defined(__AVX512F__)
  const __mmask16 all = 0xFFFF;  // maskz: GCC 12 warns about the unmasked forms' undefined pass-through
  return (Simd<float>::V)_mm512_maskz_min_ps(all, _mm512_set1_ps(hi), _mm512_maskz_max_ps(all, _mm512_set1_ps(lo), (__m512)x));
#elif defined(__AVX2__)
  return (Simd<float>::V)_mm256_min_ps(_mm256_set1_ps(hi), _mm256_max_ps(_mm256_set1_ps(lo), (__m256)x));
#elif defined(__SSE2__)
  return (Simd<float>::V)_mm_min_ps(_mm_set1_ps(hi), _mm_max_ps(_mm_set1_ps(lo), (__m128)x));
#else
  using S = Simd<float>;
  S::V y = x < lo ? S::splat(lo) : x;
  return y > hi ? S::splat(hi) : y;
#endif
}

#if defined(__AVX512F__)
// sigmoid for 16-bit storage at AVX-512 (the other levels look the result up: cpu/activations.cpp):
// vsigmoid's form (1/(1+e) for x >= 0, e/(1+e) below, e <= 1) with an exponential accurate to the
// 16-bit result rather than to float32's last bit. t = -|x| log2(e) rounded once (an error below
// 150 * 2^-24 in the exponent, 25 * 2^-24 where float16 is not 0), t = floor(t) + f with f in
// [0, 1) by one vreduceps, 2^f by its minimax polynomial of degree 4 (relative error 2.7e-6,
// fitted by iteratively reweighted least squares), and vscalefps multiplies by 2^floor(t) itself,
// subnormal results rounded once. No clamp is needed: vreduceps gives f = 0 for t = -inf and for
// every |t| >= 2^23, where vscalefps gives 0; NaN stays NaN. 13 vector operations per 16 lanes
// where a round-to-nearest reduction and two power-of-two factors take 18 (bfloat16 in cache on a
// 2-core Sapphire Rapids VM: 0.51-0.55 -> 0.31-0.39 ns per element per thread). About 1e-5
// relative at the far end of bfloat16's range (7e-5 with vdiv_16bit's), below half an ulp of
// either dtype (every pattern is tested at every level).
inline Simd<float>::V vsigmoid_16bit(Simd<float>::V x) {
  using S = Simd<float>;
  const S::V t = vabs<float>(x) * -1.44269504088896341f;
  const __m512 tt = (__m512)t;
  // imm 0x09: keep 0 fraction bits, round down, suppress the precision exception
  const S::V f = (S::V)_mm512_maskz_reduce_ps(__mmask16(0xFFFF), tt, 0x09);
  S::V p = S::splat(0.013534121215343475f);
  p = p * f + 0.052011482417583466f;
  p = p * f + 0.24144279956817627f;
  p = p * f + 0.6930038332939148f;
  p = p * f + 1.0000026226043701f;
  const S::V e = (S::V)_mm512_maskz_scalef_ps(__mmask16(0xFFFF), (__m512)p, tt);  // p * 2^floor(t)
  const S::V pos = vdiv_16bit(S::splat(1.0f), e + 1.0f);  // 1 + e in [1, 2]
  return x >= 0.0f ? pos : e * pos;
}
#endif

// tanh for 16-bit storage (float32 arithmetic, the result rounded to float16 / bfloat16 once):
// x * P(x^2) / Q(x^2) with x clamped to [-5, 5] (tanh(5) rounds to 1 in both dtypes), P and Q of
// degree 2 and 3 with P(0) = Q(0) = 1, fitted by iteratively reweighted least squares for the
// relative error: 2.2e-6 on [0, 5] (6.3e-5 with vdiv_16bit's), below half an ulp of either dtype (float16: 2.4e-4), at a
// third of vtanh's operations (no exp, no reduction). Every finite input comes out within 1 ulp
// (tests/test_activations.py checks every pattern at every level); at the baseline and AVX2 levels
// every bfloat16 one is correctly rounded (AVX-512's rcp14 division: 2 of 65280 one ulp off). NaN
// stays NaN (vclamp_keep_nan), +-0 keeps its sign.
inline Simd<float>::V vtanh_16bit(Simd<float>::V x) {
  using S = Simd<float>;
  const S::V xc = vclamp_keep_nan(x, -5.0f, 5.0f);
  const S::V t = xc * xc;
  const S::V p = (0.001643492141738534f * t + 0.11671819537878036f) * t + 1.0f;
  const S::V q = ((6.487190694315359e-05f * t + 0.018341366201639175f) * t + 0.45004037022590637f) * t + 1.0f;
  return vdiv_16bit(xc * p, q);  // q in [1, 1.8]
}

NK_KERNEL_NAMESPACE_END
