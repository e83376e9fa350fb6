// Host-side scalar float16 / bfloat16 conversions, for the small per-channel / per-column vectors the
// bindings read and write (gamma, dgamma, running statistics). Kernels convert with core/simd.hpp;
// these give the same bits: exact widening, round to nearest even, NaN quiet with its high payload
// kept (tests/test_core.py, tests of the families). Internal linkage: host TUs only (kernel TUs are
// compiled per ISA level and must not share inline code with them, see core/common.hpp).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#include "core/common.hpp"

namespace nk {
namespace {

inline uint32_t f32_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float f32_from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline float bf16_to_float(uint16_t h) { return f32_from_bits(uint32_t(h) << 16); }

inline float f16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
  if (e == 0x1F) return f32_from_bits(sign | 0x7F800000u | (m << 13) | (m ? 0x400000u : 0u));  // inf; NaN quiet
  if (e != 0) return f32_from_bits(sign | ((e + 112u) << 23) | (m << 13));
  const float v = std::ldexp(float(m), -24);  // zero or subnormal: exact
  return sign ? -v : v;
}

inline uint16_t float_to_bf16(float f) {
  const uint32_t u = f32_bits(f);
  if ((u & 0x7FFFFFFFu) > 0x7F800000u) return uint16_t((u >> 16) | 0x40u);
  return uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
}

inline uint16_t float_to_f16(float f) {
  const uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000u, a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return uint16_t(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
  if (a >= 0x47800000u) return uint16_t(sign | 0x7C00u);
  if (a >= 0x38800000u) return uint16_t(sign | ((a + 0xC8000000u + 0xFFFu + ((a >> 13) & 1u)) >> 13));
  // below 2^-14: in units of 2^-24, rounded to nearest even (a float below 2^-25 gives 0)
  const uint32_t e = a >> 23;
  if (e < 102) return uint16_t(sign);
  const uint32_t mant = (a & 0x7FFFFFu) | 0x800000u, shift = 126 - e;  // 14..24
  const uint32_t half = 1u << (shift - 1), rest = mant & ((1u << shift) - 1u);
  uint32_t r = mant >> shift;
  if (rest > half || (rest == half && (r & 1u))) ++r;
  return uint16_t(sign | r);
}

// double -> float rounded to odd (the last bit set when inexact): rounding that to nearest even in
// a format of at most 22 significant bits is the correctly rounded double (no double rounding).
inline float round_to_odd_float(double v) {
  if (std::isnan(v) || std::isinf(v)) return float(v);
  float f = float(v);
  if (double(f) == v) return f;
  if (std::isinf(f) || std::fabs(double(f)) > std::fabs(v)) f = std::nextafter(f, 0.0f);  // truncate
  return f32_from_bits(f32_bits(f) | 1u);
}

inline uint16_t double_to_bf16(double v) { return float_to_bf16(round_to_odd_float(v)); }
inline uint16_t double_to_f16(double v) { return float_to_f16(round_to_odd_float(v)); }

// Element `off` of a float array of any dtype as double / written from a double (rounded to nearest).
inline double read_value(const void* data, DType dt, int64_t off) {
  switch (dt) {
    case DType::f64: return static_cast<const double*>(data)[off];
    case DType::f32: return double(static_cast<const float*>(data)[off]);
    case DType::f16: return double(f16_to_float(static_cast<const uint16_t*>(data)[off]));
    case DType::bf16: return double(bf16_to_float(static_cast<const uint16_t*>(data)[off]));
  }
  return 0;
}
inline void write_value(void* data, DType dt, int64_t off, double v) {
  switch (dt) {
    case DType::f64: static_cast<double*>(data)[off] = v; break;
    case DType::f32: static_cast<float*>(data)[off] = float(v); break;
    case DType::f16: static_cast<uint16_t*>(data)[off] = double_to_f16(v); break;
    case DType::bf16: static_cast<uint16_t*>(data)[off] = double_to_bf16(v); break;
  }
}

}  // namespace
}  // namespace nk
