// Activation kernels, forward and backward, float32/float64 and float16/bfloat16 storage (loaded
// into float32, computed in float32, rounded to nearest even on store: core/simd.hpp), one SIMD
// source compiled per ISA level (see csrc/core/simd.hpp). Reference: nnkernels.reference.activations.
// Bindings: csrc/bindings/activations.cpp. CUDA twin: csrc/cuda/activations.cu.
// Run: python -m nnkernels bench --ops relu sigmoid tanh leaky_relu
#include "cpu/activations.hpp"

#include "core/simd.hpp"
#include "core/vmath.hpp"

NK_KERNEL_NAMESPACE_BEGIN
namespace {

// T: the storage type; C: the type of the arithmetic (float for the 16-bit types).
template <class T> using C = compute_t<T>;
template <class T> using V = typename Simd<C<T>>::V;

// relu: y = x < 0 ? 0 : x   (NaN propagates: the comparison is false)
template <class T>
void relu_fwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_unary<T>(static_cast<const T*>(in[0]), static_cast<T*>(out), n, stream,
               [](V<T> x) { return x < C<T>(0) ? V<T>{} : x; });
}

// relu backward: dx = x > 0 ? dout : 0
template <class T>
void relu_bwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_binary<T>(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<T*>(out), n, stream,
                [](V<T> dout, V<T> x) { return x > C<T>(0) ? dout : V<T>{}; });
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

// sigmoid: y = 1 / (1 + exp(-x)), evaluated without overflow (core/vmath.hpp)
template <class T>
void sigmoid_fwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_unary<T>(static_cast<const T*>(in[0]), static_cast<T*>(out), n, stream, [](V<T> x) { return vsigmoid<C<T>>(x); });
}

// sigmoid backward from the output: dx = dout * y * (1 - y)
template <class T>
void sigmoid_bwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_binary<T>(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<T*>(out), n, stream,
                [](V<T> dout, V<T> y) { return dout * y * (C<T>(1) - y); });
}

// tanh: y = tanh(x) via expm1 (core/vmath.hpp)
template <class T>
void tanh_fwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_unary<T>(static_cast<const T*>(in[0]), static_cast<T*>(out), n, stream, [](V<T> x) { return vtanh<C<T>>(x); });
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
