// Weight-initialisation kernels: Philox4x32-10 random words -> uniform / normal (Box-Muller)
// float32/float64 arrays (float16/bfloat16: the float32 numbers rounded to nearest even), one
// group of 16 Philox blocks at a time (layout and math: init.hpp).
// Bit-identical across ISA levels, thread counts and the CUDA twin (csrc/cuda/init.cu):
// the generator is integer arithmetic and the transforms are the shared IEEE sequences of
// init.hpp (no FMA contraction: ISO C++ mode compiles with -ffp-contract=off).
// Reference: nnkernels.reference.init (NumPy Philox + same transforms). Bindings:
// csrc/bindings/init.cpp. Test: pytest tests/test_init.py; bench: python -m nnkernels bench --ops init
#include "cpu/init.hpp"

#include <cstring>

#include "core/philox.hpp"
#include "core/simd.hpp"

NK_KERNEL_NAMESPACE_BEGIN
namespace {

using namespace philox_detail;

typedef uint32_t U32 __attribute__((vector_size(kVecBytes), aligned(kVecBytes)));
constexpr int kL = kVecBytes / 4;  // 32-bit lanes per vector
constexpr int kVecPerGroup = 16 / kL;

inline U32 u32_load(const uint32_t* p) { U32 v; std::memcpy(&v, p, sizeof(U32)); return v; }
inline void u32_store(uint32_t* p, U32 v) { std::memcpy(p, &v, sizeof(U32)); }

inline void philox10(U32& c0, U32& c1, U32& c2, U32& c3, uint32_t k0, uint32_t k1) {
  philox::rounds10(c0, c1, c2, c3, k0, k1);  // core/philox.hpp
}

// Words of blocks j0 .. j0+15 (j0 a multiple of 16): W[w][l] = word w of block j0 + l.
inline void philox_group(uint64_t j0, uint64_t seed, uint32_t W[4][16]) {
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (int v = 0; v < kVecPerGroup; ++v) {
    U32 c0, c1 = U32{} + uint32_t(j0 >> 32), c2 = U32{}, c3 = U32{};
    for (int k = 0; k < kL; ++k) c0[k] = uint32_t(j0) + uint32_t(v * kL + k);
    philox10(c0, c1, c2, c3, k0, k1);
    u32_store(&W[0][v * kL], c0);
    u32_store(&W[1][v * kL], c1);
    u32_store(&W[2][v * kL], c2);
    u32_store(&W[3][v * kL], c3);
  }
}

void philox_one(const uint32_t* ctr, const uint32_t* key, uint32_t* out) {
  U32 c0 = U32{} + ctr[0], c1 = U32{} + ctr[1], c2 = U32{} + ctr[2], c3 = U32{} + ctr[3];
  philox10(c0, c1, c2, c3, key[0], key[1]);
  out[0] = c0[0];
  out[1] = c1[0];
  out[2] = c2[0];
  out[3] = c3[0];
}

template <class T> using V = typename Simd<T>::V;
template <class T> using VI = typename Simd<T>::I;

// IEEE square root, lane-wise (GCC turns the lane loop into sqrtps/sqrtpd).
inline V<double> vsqrt_rn(V<double> x) {
  for (int k = 0; k < Simd<double>::N; ++k) x[k] = __builtin_sqrt(x[k]);
  return x;
}
inline V<float> vsqrt_rn(V<float> x) {
  for (int k = 0; k < Simd<float>::N; ++k) x[k] = __builtin_sqrtf(x[k]);
  return x;
}

// Exact small non-negative integer (< 2^23) held in an int lane -> float/double lane, via
// the 2^mant magic (no int64 -> double conversion instruction needed on AVX2).
template <class T>
inline V<T> int_to_fp(VI<T> k) {
  using S = Simd<T>;
  if constexpr (sizeof(T) == 4) {
    return S::as_float(k | int32_t(0x4B000000)) - T(8388608.0);
  } else {
    return S::as_float(k | int64_t(0x4330000000000000LL)) - T(4503599627370496.0);
  }
}

// x in (0, 1], normal: x = 2^e m, m in [sqrt(1/2), sqrt(2)) -> log x.
template <class T>
inline V<T> vlog_unit(V<T> x) {
  using S = Simd<T>;
  using I = VI<T>;
  using IT = typename IntOf<T>::type;
  constexpr int mb = sizeof(T) == 4 ? 23 : 52;
  constexpr IT bias = sizeof(T) == 4 ? 127 : 1023;
  const IT mant_mask = (IT(1) << mb) - 1;
  const IT one_bits = bias << mb;
  const I bits = S::as_int(x);
  V<T> e = int_to_fp<T>(bits >> mb) - T(bias);  // biased exponent >= 1 (x normal)
  V<T> m = S::as_float((bits & mant_mask) | one_bits);
  const T sqrt2 = T(1.4142135623730951);
  const auto big = m > sqrt2;
  m = big ? m * T(0.5) : m;
  e = big ? e + T(1) : e;
  return log_from_reduced<T>(m, e);
}

// Box-Muller on lanes: u1 in (0, 1], y = 4 u2 in [0, 4): z0 = R cos(2 pi u2), z1 = R sin(2 pi u2).
template <class T>
inline void vbox_muller(V<T> u1, V<T> y, V<T>& z0, V<T>& z1) {
  const V<T> lg = vlog_unit<T>(u1);
  const V<T> R = vsqrt_rn(lg * T(-2));
  const V<T> n = round_small<T>(y);
  const V<T> r = y - n;
  V<T> s, c;
  sincos_halfpi<T>(r, s, c);
  const auto swap = (n == T(1)) | (n == T(3));
  const auto sneg = (n == T(2)) | (n == T(3));
  const auto cneg = (n == T(1)) | (n == T(2));
  V<T> sn = swap ? c : s;
  V<T> cs = swap ? s : c;
  sn = sneg ? -sn : sn;
  cs = cneg ? -cs : cs;
  z0 = R * cs;
  z1 = R * sn;
}

// One float32 group (64 outputs) from W into dst.
inline void group_f32(const uint32_t W[4][16], float* dst, const InitParams& p, bool stream) {
  using S = Simd<float>;
  using I = VI<float>;
  const float a = float(p.a), b = float(p.b);
  const float inv24 = 1.0f / 16777216.0f, inv22 = 1.0f / 4194304.0f;
  auto put = [&](float* q, V<float> v) { if (stream) S::stream(q, v); else S::store(q, v); };
  for (int v = 0; v < kVecPerGroup; ++v) {
    const int o = v * kL;
    if (p.dist == kInitUniform) {
      for (int w = 0; w < 4; ++w) {
        const I k = I(u32_load(&W[w][o]) >> 8);
        const V<float> u = __builtin_convertvector(k, V<float>) * inv24;
        put(dst + 16 * w + o, u * b + a);
      }
    } else {
      for (int h = 0; h < 2; ++h) {
        const I k1 = I(u32_load(&W[2 * h][o]) >> 8) + 1;
        const I k2 = I(u32_load(&W[2 * h + 1][o]) >> 8);
        const V<float> u1 = __builtin_convertvector(k1, V<float>) * inv24;
        const V<float> y = __builtin_convertvector(k2, V<float>) * inv22;
        V<float> z0, z1;
        vbox_muller<float>(u1, y, z0, z1);
        put(dst + 32 * h + o, z0 * b + a);
        put(dst + 32 * h + 16 + o, z1 * b + a);
      }
    }
  }
}

// Half-width int32 vector with as many lanes as a double vector.
typedef int32_t IH __attribute__((vector_size(kVecBytes / 2)));
constexpr int kLD = kVecBytes / 8;

inline V<double> u53(const uint32_t* w0, const uint32_t* w1, int o, uint32_t add) {
  IH a, c;
  for (int k = 0; k < kLD; ++k) {
    a[k] = int32_t(w0[o + k] >> 5);
    c[k] = int32_t(w1[o + k] >> 6);
  }
  const V<double> da = __builtin_convertvector(a, V<double>);
  const V<double> dc = __builtin_convertvector(c, V<double>);
  V<double> k = da * 67108864.0 + dc;
  if (add) k = k + 1.0;
  return k * (1.0 / 9007199254740992.0);
}

// One float64 group (32 outputs).
inline void group_f64(const uint32_t W[4][16], double* dst, const InitParams& p, bool stream) {
  using S = Simd<double>;
  const double a = p.a, b = p.b;
  auto put = [&](double* q, V<double> v) { if (stream) S::stream(q, v); else S::store(q, v); };
  for (int o = 0; o < 16; o += kLD) {
    if (p.dist == kInitUniform) {
      put(dst + o, u53(W[0], W[1], o, 0) * b + a);
      put(dst + 16 + o, u53(W[2], W[3], o, 0) * b + a);
    } else {
      const V<double> u1 = u53(W[0], W[1], o, 1);
      const V<double> y = u53(W[2], W[3], o, 0) * 4.0;
      V<double> z0, z1;
      vbox_muller<double>(u1, y, z0, z1);
      put(dst + o, z0 * b + a);
      put(dst + 16 + o, z1 * b + a);
    }
  }
}

template <class T>
void fill(void* out, int64_t g0, int64_t g1, int64_t n, const InitParams* p, bool stream) {
  constexpr int64_t G = sizeof(T) == 4 ? kInitGroupF32 : kInitGroupF64;
  T* y = static_cast<T*>(out);
  alignas(64) uint32_t W[4][16];
  alignas(64) T tmp[G];
  const bool st = stream && (reinterpret_cast<uintptr_t>(y) % kVecBytes) == 0;
  for (int64_t g = g0; g < g1; ++g) {
    philox_group(uint64_t(g) * 16, p->seed, W);
    const bool full = (g + 1) * G <= n;
    T* dst = full ? y + g * G : tmp;
    if constexpr (sizeof(T) == 4)
      group_f32(W, dst, *p, st && full);
    else
      group_f64(W, dst, *p, st && full);
    if (!full) std::memcpy(y + g * G, tmp, size_t(n - g * G) * sizeof(T));
  }
  if (st) stream_fence();
}

// float16 / bfloat16: the float32 group (the same words and transforms, so the same float32
// values), each rounded to nearest even on the store (core/simd.hpp). Groups of 64 as float32.
template <class X>
void fill_16bit(void* out, int64_t g0, int64_t g1, int64_t n, const InitParams* p, bool) {
  constexpr int64_t G = kInitGroupF32, N = Storage<X>::N;
  X* y = static_cast<X*>(out);
  alignas(64) uint32_t W[4][16];
  alignas(64) float tmp[G];
  for (int64_t g = g0; g < g1; ++g) {
    philox_group(uint64_t(g) * 16, p->seed, W);
    group_f32(W, tmp, *p, false);
    X* dst = y + g * G;
    const int64_t count = n - g * G < G ? n - g * G : G;
    int64_t i = 0;
    for (; i + N <= count; i += N) Storage<X>::store(dst + i, Simd<float>::load(tmp + i));
    if (i < count) Storage<X>::store_partial(dst + i, Simd<float>::load(tmp + i), count - i);
  }
}

}  // namespace
NK_KERNEL_NAMESPACE_END

NK_DEFINE_ISA_TABLE(InitKernels, init_kernels) = {
    {&nk::NK_ISA_NS::fill<float>, &nk::NK_ISA_NS::fill<double>, &nk::NK_ISA_NS::fill_16bit<nk::float16_t>,
     &nk::NK_ISA_NS::fill_16bit<nk::bfloat16_t>},
    &nk::NK_ISA_NS::philox_one,
};
