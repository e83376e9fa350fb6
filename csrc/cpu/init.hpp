// Weight initialisation: counter-based random numbers (Philox4x32-10) and their transforms.
//
// Shared by the CPU kernels (csrc/cpu/init.cpp, compiled per ISA level) and the CUDA kernels
// (csrc/cuda/init.cu): the portable math below is written once, as templates over the value
// type F (a GCC SIMD vector on the CPU, a round-to-nearest wrapper `Rn` on the GPU whose
// operators are __fadd_rn/__fmul_rn/...), so that both sides execute the same IEEE
// operations in the same order and produce bit-identical arrays. Only +, -, *, /, sqrt
// (all correctly rounded in IEEE 754, never contracted into FMA: kernel TUs compile in ISO
// mode, -ffp-contract=off; the CUDA side uses the _rn intrinsics) and exact bit manipulation.
//
// Generator: Philox4x32-10 (J. K. Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel
// random numbers: as easy as 1, 2, 3", SC'11). Key = (seed & 0xffffffff, seed >> 32);
// counter of "block" j = (j & 0xffffffff, j >> 32, 0, 0); each block yields four 32-bit words.
//
// Element -> (block, word) layout, a fixed function of the flat C-order index i (independent of
// thread count, instruction set and device):
//   float32: group g = i / 64 holds blocks 16g .. 16g+15; element i takes word w = (i % 64) / 16
//            of block 16g + i % 16.
//   float64: group g = i / 32 holds blocks 16g .. 16g+15; element i takes pair p = (i % 32) / 16
//            (words 2p, 2p+1) of block 16g + i % 16.
// Uniform [0, 1): float32 from the top 24 bits of a word, u = (w >> 8) * 2^-24; float64 from
//   53 bits of two words, u = ((w0 >> 5) * 2^26 + (w1 >> 6)) * 2^-53 (exact).
// Normal: Box-Muller, z0 = R cos(2 pi u2), z1 = R sin(2 pi u2), R = sqrt(-2 log u1) with
//   u1 in (0, 1] (the uniform plus one ulp step, so log never sees 0). float32 pairs words
//   (0, 1) -> w = 0 (cos), 1 (sin) and (2, 3) -> w = 2, 3; float64 takes u1 from pair 0 and
//   u2 from pair 1 of a block, z0 -> p = 0, z1 -> p = 1.
//   log: x = 2^e m, m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s), s = (m-1)/(m+1), odd series.
//   sin/cos(2 pi u): y = 4u, n = nearest integer of y (exact), r = y - n in [-1/2, 1/2],
//   sin/cos((pi/2) r) by Taylor polynomials (|arg| <= pi/4), quadrant n mod 4.
// Output: y = u * b + a (uniform: a = low, b = high - low), y = z * b + a (normal: a = mean,
//   b = std). Note the float32 normal tail is bounded by R <= sqrt(-2 log 2^-24) = 5.77.
#pragma once
#include "core/common.hpp"
#include "core/isa_table.hpp"

namespace nk {

enum InitDist : int { kInitUniform = 0, kInitNormal = 1 };

struct InitParams {
  uint64_t seed = 0;
  int dist = kInitUniform;
  double a = 0.0;  // low / mean
  double b = 1.0;  // (high - low) / std
};

// Fill elements of groups [g0, g1) (64 float32 or 32 float64 elements per group) of a
// contiguous array of n elements; elements >= n are not written.
using InitFillFn = void (*)(void* out, int64_t g0, int64_t g1, int64_t n, const InitParams* p, bool stream);

struct InitKernels {
  InitFillFn fill[kDTypeCount];  // [dtype_index]; float16/bfloat16 in float32 groups (kInitGroupF32)
  void (*philox)(const uint32_t* ctr, const uint32_t* key, uint32_t* out);  // one block (tests)
};

constexpr int64_t kInitGroupF32 = 64;
constexpr int64_t kInitGroupF64 = 32;

}  // namespace nk

NK_DECLARE_ISA_TABLE(InitKernels, init_kernels)

// ---------------------------------------------------------------- portable math
#if defined(NK_KERNEL_TU) || defined(__CUDACC__)

#if defined(__CUDACC__)
#define NK_INIT_FN __host__ __device__ __forceinline__
#define NK_INIT_NS_BEGIN namespace nk { namespace cuda {
#define NK_INIT_NS_END } }
#else
#define NK_INIT_FN inline
#define NK_INIT_NS_BEGIN NK_KERNEL_NAMESPACE_BEGIN
#define NK_INIT_NS_END NK_KERNEL_NAMESPACE_END
#endif

NK_INIT_NS_BEGIN
namespace philox_detail {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // Philox4x32 multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments

// log(x) from its reduction x = 2^e * m (e an exact integer in F, m in [sqrt(1/2), sqrt(2))):
// log m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m - 1) / (m + 1), |s| <= 0.1716;
// truncation below 2^-30 (float) / 2^-56 (double) relative. log x = e ln2_hi + (log m + e ln2_lo).
template <class T, class F>
NK_INIT_FN F log_from_reduced(F m, F e) {
  F f = m - T(1);
  F s = f / (m + T(1));
  F a = s * s;
  F p;
  if constexpr (sizeof(T) == 4) {
    p = a * T(1.0 / 9.0) + T(1.0 / 7.0);
    p = p * a + T(1.0 / 5.0);
    p = p * a + T(1.0 / 3.0);
  } else {
    p = a * T(1.0 / 21.0) + T(1.0 / 19.0);
    p = p * a + T(1.0 / 17.0);
    p = p * a + T(1.0 / 15.0);
    p = p * a + T(1.0 / 13.0);
    p = p * a + T(1.0 / 11.0);
    p = p * a + T(1.0 / 9.0);
    p = p * a + T(1.0 / 7.0);
    p = p * a + T(1.0 / 5.0);
    p = p * a + T(1.0 / 3.0);
  }
  F s2 = s + s;
  F logm = s2 + s2 * (a * p);
  const T ln2_hi = sizeof(T) == 4 ? T(0.693145751953125) : T(6.93147180369123816490e-01);
  const T ln2_lo = sizeof(T) == 4 ? T(1.428606765330187045e-06) : T(1.90821492927058770002e-10);
  F t = e * ln2_lo;
  t = logm + t;
  return e * ln2_hi + t;
}

// sin((pi/2) r) and cos((pi/2) r) for |r| <= 1/2 (Taylor; truncation < 2^-30 / 2^-60).
template <class T, class F>
NK_INIT_FN void sincos_halfpi(F r, F& s, F& c) {
  F a = r * r;
  F ps, pc;
  if constexpr (sizeof(T) == 4) {
    ps = a * T(0.00016044118478735983) + T(-0.004681754135318688);
    ps = ps * a + T(0.07969262624616705);
    ps = ps * a + T(-0.6459640975062463);
    ps = ps * a + T(1.5707963267948966);
    pc = a * T(-2.5202042373060607e-05) + T(0.0009192602748394266);
    pc = pc * a + T(-0.02086348076335296);
    pc = pc * a + T(0.25366950790104803);
    pc = pc * a + T(-1.2337005501361697);
  } else {
    ps = a * T(6.0669357311061955e-12) + T(-6.688035109811468e-10);
    ps = ps * a + T(5.692172921967927e-08);
    ps = ps * a + T(-3.598843235212085e-06);
    ps = ps * a + T(0.00016044118478735983);
    ps = ps * a + T(-0.004681754135318688);
    ps = ps * a + T(0.07969262624616705);
    ps = ps * a + T(-0.6459640975062463);
    ps = ps * a + T(1.5707963267948966);
    pc = a * T(-5.294400200734623e-13) + T(6.565963114979473e-11);
    pc = pc * a + T(-6.386603083791852e-09);
    pc = pc * a + T(4.710874778818172e-07);
    pc = pc * a + T(-2.5202042373060607e-05);
    pc = pc * a + T(0.0009192602748394266);
    pc = pc * a + T(-0.02086348076335296);
    pc = pc * a + T(0.25366950790104803);
    pc = pc * a + T(-1.2337005501361697);
  }
  s = r * ps;
  c = pc * a + T(1);
}

// Round y (0 <= y <= 4) to the nearest integer, ties to even, exactly (magic-number add).
template <class T, class F>
NK_INIT_FN F round_small(F y) {
  const T magic = sizeof(T) == 4 ? T(12582912.0) : T(6755399441055744.0);
  F t = y + magic;
  return t - magic;
}

}  // namespace philox_detail
NK_INIT_NS_END

#endif  // NK_KERNEL_TU || __CUDACC__
