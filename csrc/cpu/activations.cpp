// Activation kernels, forward and backward, float32/float64 and float16/bfloat16 storage (loaded
// into float32, computed in float32, rounded to nearest even on store: core/simd.hpp), one SIMD
// source compiled per ISA level (see csrc/core/simd.hpp). Reference: nnkernels.reference.activations.
// Bindings: csrc/bindings/activations.cpp. CUDA twin: csrc/cuda/activations.cu.
// Run: python -m nnkernels bench --ops relu sigmoid tanh leaky_relu
#include "cpu/activations.hpp"

#include <type_traits>

#include "core/simd.hpp"
#include "core/vmath.hpp"

NK_KERNEL_NAMESPACE_BEGIN
namespace {

// T: the storage type; C: the type of the arithmetic (float for the 16-bit types).
template <class T> using C = compute_t<T>;
template <class T> using V = typename Simd<C<T>>::V;

// ReLU on 16-bit storage is a selection of bit patterns: it runs on the 16-bit lanes directly (a
// full register of them, no conversion), with the bits the float32 path gives: a negative number
// becomes +0, everything else (-0 included) passes, a NaN gets its quiet bit (as the float32
// round trip sets it: core/simd.hpp).
typedef int16_t I16V __attribute__((vector_size(kVecBytes), aligned(kVecBytes)));
template <class T> constexpr int16_t kInf16 = std::is_same_v<T, bfloat16_t> ? 0x7F80 : 0x7C00;
template <class T> constexpr int16_t kQuiet16 = std::is_same_v<T, bfloat16_t> ? 0x0040 : 0x0200;
template <class T> inline I16V quieted16(I16V x) {
  return (x & 0x7FFF) > kInf16<T> ? x | kQuiet16<T> : x;
}
// out[i] = f(a[i], b[i]) (b unused for unary ops) over 16-bit lanes; the head (up to the
// register alignment of out, when streaming) and the tail go through a zero-padded register
// (lanes are independent and exact: every path gives the same bits).
template <class F>
inline void map_bits16(const void* a, const void* b, void* out, int64_t n, bool stream, F f) {
  constexpr int64_t L = kVecBytes / 2;
  const char* pa = static_cast<const char*>(a);
  const char* pb = static_cast<const char*>(b ? b : a);
  char* po = static_cast<char*>(out);
  auto ld = [](const char* p) { I16V v; std::memcpy(&v, p, sizeof(v)); return v; };
  auto part = [&](int64_t i, int64_t k) {
    I16V x{}, y{};
    std::memcpy(&x, pa + 2 * i, size_t(k) * 2);
    std::memcpy(&y, pb + 2 * i, size_t(k) * 2);
    const I16V r = f(x, y);
    std::memcpy(po + 2 * i, &r, size_t(k) * 2);
  };
  int64_t i = 0;
  if (stream && reinterpret_cast<uintptr_t>(po) % 2 == 0) {
    // NumPy's large arrays start 16 bytes into a page: without the peel nothing would stream
    // (measured: 9.2 ms, 66 % of copy, for a 64M bfloat16 relu into out=).
    const int64_t mis = int64_t(reinterpret_cast<uintptr_t>(po) % kVecBytes);
    if (mis != 0) {
      i = (kVecBytes - mis) / 2 < n ? (kVecBytes - mis) / 2 : n;
      part(0, i);
    }
    for (; i + L <= n; i += L) {
      const I16V r = f(ld(pa + 2 * i), ld(pb + 2 * i));
      Simd<float>::stream(reinterpret_cast<float*>(po + 2 * i), Simd<float>::as_float((Simd<float>::I)r));
    }
    stream_fence();
  }
  for (; i + L <= n; i += L) {
    const I16V r = f(ld(pa + 2 * i), ld(pb + 2 * i));
    std::memcpy(po + 2 * i, &r, sizeof(r));
  }
  if (i < n) part(i, n - i);
}

// relu: y = x < 0 ? 0 : x   (NaN propagates: the comparison is false)
template <class T>
void relu_fwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  if constexpr (sizeof(T) == 2) {
    map_bits16(in[0], nullptr, out, n, stream, [](I16V x, I16V) {
      const I16V negative = (x < 0) & ((x & 0x7FFF) != 0) & ((x & 0x7FFF) <= kInf16<T>);  // -0, NaN pass
      return negative ? I16V{} : quieted16<T>(x);
    });
  } else {
    map_unary<T>(static_cast<const T*>(in[0]), static_cast<T*>(out), n, stream,
                 [](V<T> x) { return x < C<T>(0) ? V<T>{} : x; });
  }
}

// relu backward: dx = x > 0 ? dout : 0
template <class T>
void relu_bwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  if constexpr (sizeof(T) == 2) {
    map_bits16(in[0], in[1], out, n, stream, [](I16V dout, I16V x) {
      const I16V positive = (x > 0) & (x <= kInf16<T>);  // sign clear, not zero, not NaN
      return positive ? quieted16<T>(dout) : I16V{};
    });
  } else {
    map_binary<T>(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<T*>(out), n, stream,
                  [](V<T> dout, V<T> x) { return x > C<T>(0) ? dout : V<T>{}; });
  }
}

// leaky relu: y = x > 0 ? x : slope * x   (slope at exactly 0, as PyTorch)
template <class T>
void leaky_fwd(const void* const* in, void* out, int64_t n, const void* p, bool stream) {
  const C<T> slope = C<T>(static_cast<const ActivationParams*>(p)->negative_slope);
  map_unary<T>(static_cast<const T*>(in[0]), static_cast<T*>(out), n, stream,
               [slope](V<T> x) { return x > C<T>(0) ? x : x * slope; });
}

// leaky relu backward: dx = x > 0 ? dout : slope * dout
template <class T>
void leaky_bwd(const void* const* in, void* out, int64_t n, const void* p, bool stream) {
  const C<T> slope = C<T>(static_cast<const ActivationParams*>(p)->negative_slope);
  map_binary<T>(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<T*>(out), n, stream,
                [slope](V<T> dout, V<T> x) { return x > C<T>(0) ? dout : dout * slope; });
}

// sigmoid on 16-bit storage below AVX-512: out[i] = table[bits of in[i]], the correctly rounded
// result of every input pattern (drivers/activations.cpp). Evaluating exp and 1 / (1 + e) per
// vector is bound by its dependency chain there (about 80 cycles per pair of vectors, more than
// the FP scheduler overlaps). On an AVX2-only EPYC (Zen 3, 2026-12-04, a noisy VM) the lookup took
// 0.35-0.45 ns per element in cache against 0.72-0.90; 64M from DRAM on 2 threads, in the bench
// (interleaved with a copy): bfloat16 17.1-19.3 ms against 29.5-34.1, float16 19.7-23.1 against
// 28.0-34.8 (float16's normal inputs spread over 8x more patterns: more of its table falls out
// of L1), single calls between 11.2 and 22 ms on that noisy VM. Four lookups make one 64-bit store,
// streamed (MOVNTI) when the output is large; a standalone test of the loop over 64M elements on
// one thread: 0.33 ns per element, 0.58 storing each element, 0.51 with two AVX2 gathers per 16
// elements, and a software prefetch of the input only slowed it. tanh keeps its rational form (no
// exp: in cache 0.26-0.45 ns, no slower than the lookup), and at AVX-512 the polynomial sigmoid is
// as fast (0.31-0.39 ns per element per thread on a Sapphire Rapids VM).
typedef uint16_t U16 __attribute__((may_alias, aligned(1)));
inline void map_lookup16(const void* in, void* out, int64_t n, bool stream, const uint16_t* table) {
  const U16* x = static_cast<const U16*>(in);
  U16* y = static_cast<U16*>(out);
  auto four = [&](int64_t j) {
    return uint64_t(table[x[j]]) | uint64_t(table[x[j + 1]]) << 16 | uint64_t(table[x[j + 2]]) << 32 |
           uint64_t(table[x[j + 3]]) << 48;
  };
  int64_t i = 0;
#if defined(__SSE2__)
  if (stream && reinterpret_cast<uintptr_t>(y) % 2 == 0) {
    for (; i < n && reinterpret_cast<uintptr_t>(y + i) % 8 != 0; ++i) y[i] = table[x[i]];
    for (; i + 4 <= n; i += 4) {
      _mm_stream_si64(reinterpret_cast<long long*>(y + i), static_cast<long long>(four(i)));
    }
    stream_fence();
  }
#endif
  for (; i + 4 <= n; i += 4) {
    const uint64_t r = four(i);
    std::memcpy(y + i, &r, 8);
  }
  for (; i < n; ++i) y[i] = table[x[i]];
}

// sigmoid: y = 1 / (1 + exp(-x)), evaluated without overflow (core/vmath.hpp); on 16-bit storage
// the lookup above, or at AVX-512 an exponential accurate to the 16-bit result
template <class T>
void sigmoid_fwd(const void* const* in, void* out, int64_t n, const void* p, bool stream) {
  if constexpr (sizeof(T) == 2) {
#if defined(__AVX512F__)
    (void)p;
    map_unary<T>(static_cast<const T*>(in[0]), static_cast<T*>(out), n, stream,
                 [](V<T> x) { return vsigmoid_16bit(x); });
#else
    map_lookup16(in[0], out, n, stream, static_cast<const ActivationParams*>(p)->sigmoid16_table);
#endif
  } else {
    map_unary<T>(static_cast<const T*>(in[0]), static_cast<T*>(out), n, stream,
                 [](V<T> x) { return vsigmoid<C<T>>(x); });
  }
}

// sigmoid backward from the output: dx = dout * y * (1 - y)
template <class T>
void sigmoid_bwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_binary<T>(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<T*>(out), n, stream,
                [](V<T> dout, V<T> y) { return dout * y * (C<T>(1) - y); });
}

// tanh: y = tanh(x) via expm1, on 16-bit storage a rational approximation (core/vmath.hpp)
template <class T>
void tanh_fwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_unary<T>(static_cast<const T*>(in[0]), static_cast<T*>(out), n, stream, [](V<T> x) {
    if constexpr (sizeof(T) == 2) return vtanh_16bit(x);  // accurate to the 16-bit result, no exp
    else return vtanh<C<T>>(x);
  });
}

// tanh backward from the output: dx = dout * (1 - y^2)
template <class T>
void tanh_bwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_binary<T>(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<T*>(out), n, stream,
                [](V<T> dout, V<T> y) { return dout * (C<T>(1) - y * y); });
}

}  // namespace
NK_KERNEL_NAMESPACE_END

// One row per op, one column per dtype in DType order (float32, float64, float16, bfloat16).
#define NK_ACTIVATION_ROW(f)                                                              \
  {&nk::NK_ISA_NS::f<float>, &nk::NK_ISA_NS::f<double>, &nk::NK_ISA_NS::f<nk::float16_t>, \
   &nk::NK_ISA_NS::f<nk::bfloat16_t>}
NK_DEFINE_ISA_TABLE(ActivationKernels, activation_kernels) = {{
    NK_ACTIVATION_ROW(relu_fwd), NK_ACTIVATION_ROW(relu_bwd), NK_ACTIVATION_ROW(leaky_fwd),
    NK_ACTIVATION_ROW(leaky_bwd), NK_ACTIVATION_ROW(sigmoid_fwd), NK_ACTIVATION_ROW(sigmoid_bwd),
    NK_ACTIVATION_ROW(tanh_fwd), NK_ACTIVATION_ROW(tanh_bwd),
}};
