// Philox4x32-10 and the stochastic rounding of float32 to 16 bits, written once for kernel TUs
// (per-level namespace, see core/common.hpp: on vectors of 32-bit lanes and on scalars) and for
// CUDA TUs (namespace nk::cuda, __host__ __device__ scalars), so the CPU at every ISA level and
// the GPU draw the same words and round the same values to the same bits.
// J. K. Salmon, M. A. Moraes, R. O. Dror, D. E. Shaw, "Parallel random numbers: as easy as 1, 2, 3",
// SC'11. Integer arithmetic only. Used by the weight initialisation (csrc/cpu/init.cpp,
// csrc/cuda/init.cu) and the optimizers' stochastic rounding (csrc/cpu/optimizers.cpp,
// csrc/cuda/optimizers.cu).
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define NK_PHILOX_FN __host__ __device__ __forceinline__
#define NK_PHILOX_NS_BEGIN namespace nk { namespace cuda {
#define NK_PHILOX_NS_END } }
#elif defined(NK_KERNEL_TU)
#include "core/simd.hpp"
#define NK_PHILOX_FN inline
#define NK_PHILOX_NS_BEGIN NK_KERNEL_NAMESPACE_BEGIN
#define NK_PHILOX_NS_END NK_KERNEL_NAMESPACE_END
#else
#error "core/philox.hpp is for kernel TUs (compiled per ISA level) and CUDA TUs"
#endif

NK_PHILOX_NS_BEGIN
namespace philox {

constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments

// hi:lo = a * m (32 x 32 -> 64 bit).
NK_PHILOX_FN void mulhilo(uint32_t a, uint32_t m, uint32_t& hi, uint32_t& lo) {
  const uint64_t p = uint64_t(a) * uint64_t(m);
  hi = uint32_t(p >> 32);
  lo = uint32_t(p);
}

#if !defined(__CUDACC__)
// The same lane-wise: products of even and odd lanes, then interleave. 64-bit lane vector
// operations (GCC emits pmuludq / vpmuludq for the zero-extended 32 x 32 products):
// even = a[2k] * m, odd = a[2k+1] * m.
inline void mulhilo(U32V a, uint32_t m, U32V& hi, U32V& lo) {
  typedef uint64_t U64V __attribute__((vector_size(kVecBytes), aligned(kVecBytes)));
  const U64V a64 = U64V(a);
  const uint64_t lo32 = 0xFFFFFFFFull;
  const U64V ev = (a64 & lo32) * uint64_t(m);
  const U64V od = (a64 >> 32) * uint64_t(m);
  hi = U32V((ev >> 32) | (od & ~lo32));
  lo = U32V((ev & lo32) | (od << 32));
}
#endif

// Ten rounds on one counter (W = uint32_t) or on a vector of counters (W = U32V, kernel TUs):
//   round: (c0, c1, c2, c3) <- (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)),
//   key bump (k0, k1) += (W0, W1) between rounds.
template <class W>
NK_PHILOX_FN void rounds10(W& c0, W& c1, W& c2, W& c3, uint32_t k0, uint32_t k1) {
#if defined(__CUDACC__)
#pragma unroll
#endif
  for (int r = 0; r < 10; ++r) {
    W hi0, lo0, hi1, lo1;
    mulhilo(c0, kM0, hi0, lo0);
    mulhilo(c2, kM1, hi1, lo1);
    const W n0 = hi1 ^ c1 ^ k0;
    const W n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
}

// The optimizers' random word for the element at flat index e of a call's tensor list: word 0 of
// block (counter (e, e >> 32, step, step >> 32), key (seed, seed >> 32)).
NK_PHILOX_FN uint32_t rounding_word(uint64_t e, uint64_t step, uint64_t seed) {
  uint32_t c0 = uint32_t(e), c1 = uint32_t(e >> 32), c2 = uint32_t(step), c3 = uint32_t(step >> 32);
  rounds10(c0, c1, c2, c3, uint32_t(seed), uint32_t(seed >> 32));
  return c0;
}

// ---------------------------------------------------------------- stochastic rounding
// Bits of float32 values u rounded to 16 bits stochastically with random words r, lane-wise
// (W = uint32_t or U32V: the same expressions; the ternaries select per lane), unbiased: the
// result is one of the two neighbours of u, the upper one with probability the fraction of u
// beyond the lower one. NaN as round-to-nearest (quiet, payload kept).
template <class W> NK_PHILOX_FN W lanes_of(uint32_t v) { return W{} + v; }

// float32 -> bfloat16: the 16 dropped bits plus 16 random bits carry into the kept magnitude with
// probability (dropped bits) / 2^16 (sign-magnitude: the magnitude rounds up or down); past the
// largest number the carry gives inf.
template <class W>
NK_PHILOX_FN W bf16_stochastic_bits(W u, W r) {
  const W rounded = (u + (r >> 16)) >> 16;
  const W quiet_nan = (u >> 16) | 0x40u;
  return (u & 0x7FFFFFFFu) > 0x7F800000u ? quiet_nan : rounded;
}

// float32 -> float16. Normal float16 range: 13 dropped bits plus 13 random bits, then truncation
// (a carry moves to the next binade, past 65504 to inf). Below 2^-14 (subnormal float16, units of
// 2^-24): the magnitude as an integer M * 2^-s units, s = 126 - e > 13, rounded up with
// probability (M mod 2^s) / 2^s by adding the top s random bits (s <= 31); below 2^-31 units
// (s > 31) the probability is M / 2^s rounded down to a multiple of 2^-32. Every lane computes
// every case (selected at the end): shift counts are clamped to [1, 31] / [0, 31] so that the
// cases a lane does not take stay defined.
template <class W>
NK_PHILOX_FN W f16_stochastic_bits(W u, W r) {
  const W sign = (u >> 16) & 0x8000u;
  const W a = u & 0x7FFFFFFFu;
  const W normal = ((a + (r >> 19)) - (112u << 23)) >> 13;
  const W e = a >> 23;
  const W mant = e == 0u ? (a & 0x7FFFFFu) : ((a & 0x7FFFFFu) | 0x800000u);
  const W s = 126u - (e == 0u ? lanes_of<W>(1u) : e);  // float32 subnormals: exponent 1, no hidden bit
  const W s31 = s > 31u ? lanes_of<W>(31u) : (s < 1u ? lanes_of<W>(1u) : s);
  const W top = r >> (32u - s31);                       // s31 uniform bits
  const W small = (mant + top) >> s31;                  // s <= 31: exact
  // s >= 32: up iff r < M * 2^(32 - s) = M >> (s - 32) (shifts clamped: M < 2^24 gives 0 from 24 on)
  const W sh = s > 55u ? lanes_of<W>(31u) : (s > 31u ? s - 32u : lanes_of<W>(0u));
  const W tiny = r < (mant >> sh) ? lanes_of<W>(1u) : lanes_of<W>(0u);
  W m = a < 0x38800000u ? (s > 31u ? tiny : small) : normal;
  m = a >= 0x47800000u ? lanes_of<W>(0x7C00u) : m;
  m = a > 0x7F800000u ? (0x7E00u | ((a >> 13) & 0x3FFu)) : m;
  return m | sign;
}

}  // namespace philox
NK_PHILOX_NS_END
