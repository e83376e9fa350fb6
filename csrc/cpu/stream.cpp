// STREAM-style bandwidth kernels (copy and triad), used by the benchmark to measure the
// machine's streaming bandwidth in the same run as the op rows (McCalpin's STREAM
// methodology: arrays far larger than the caches, bytes = reads + writes).
// Bindings: csrc/bindings/stream.cpp. Run: python -m nnkernels bench --ops stream
#include "cpu/stream.hpp"

#include "core/simd.hpp"

NK_KERNEL_NAMESPACE_BEGIN
namespace {
template <class T> using V = typename Simd<T>::V;

// copy: b[i] = a[i]
void copy_f32(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_unary<float>(static_cast<const float*>(in[0]), static_cast<float*>(out), n, stream, [](V<float> a) { return a; });
}

// triad: c[i] = a[i] + s * b[i]
void triad_f32(const void* const* in, void* out, int64_t n, const void* p, bool stream) {
  const float s = float(*static_cast<const double*>(p));
  map_binary<float>(static_cast<const float*>(in[0]), static_cast<const float*>(in[1]), static_cast<float*>(out), n,
                    stream, [s](V<float> a, V<float> b) { return a + b * s; });
}

// convert: b[i] = a[i] through float32 (core/simd.hpp: exact widening, round to nearest even)
template <class From, class To>
void convert(const void* const* in, void* out, int64_t n, const void*, bool) {
  const From* a = static_cast<const From*>(in[0]);
  To* b = static_cast<To*>(out);
  constexpr int64_t N = Simd<float>::N;
  int64_t i = 0;
  for (; i + N <= n; i += N) Storage<To>::store(b + i, Storage<From>::load(a + i));
  if (i < n) Storage<To>::store_partial(b + i, Storage<From>::load_partial(a + i, n - i), n - i);
}
}  // namespace
NK_KERNEL_NAMESPACE_END

#define NK_CONVERT_ROW(From)                                                                            \
  {&nk::NK_ISA_NS::convert<From, float>, nullptr, &nk::NK_ISA_NS::convert<From, nk::float16_t>, \
   &nk::NK_ISA_NS::convert<From, nk::bfloat16_t>}
NK_DEFINE_ISA_TABLE(StreamKernels, stream_kernels) = {
    &nk::NK_ISA_NS::copy_f32, &nk::NK_ISA_NS::triad_f32,
    {NK_CONVERT_ROW(float), {nullptr, nullptr, nullptr, nullptr}, NK_CONVERT_ROW(nk::float16_t),
     NK_CONVERT_ROW(nk::bfloat16_t)}};
