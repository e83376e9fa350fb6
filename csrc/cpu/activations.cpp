// Activation kernels, forward and backward, float32/float64, one SIMD source compiled per
// ISA level (see csrc/core/simd.hpp). Reference: nnkernels.reference.activations.
// Bindings: csrc/bindings/activations.cpp. CUDA twin: csrc/cuda/activations.cu.
// Run: python -m nnkernels bench --ops relu sigmoid tanh leaky_relu
#include "cpu/activations.hpp"

#include "core/simd.hpp"
#include "core/vmath.hpp"

NK_KERNEL_NAMESPACE_BEGIN
namespace {

template <class T> using V = typename Simd<T>::V;

// relu: y = x < 0 ? 0 : x   (NaN propagates: the comparison is false)
template <class T>
void relu_fwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_unary<T>(static_cast<const T*>(in[0]), static_cast<T*>(out), n, stream,
               [](V<T> x) { return x < T(0) ? V<T>{} : x; });
}

// relu backward: dx = x > 0 ? dout : 0
template <class T>
void relu_bwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_binary<T>(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<T*>(out), n, stream,
                [](V<T> dout, V<T> x) { return x > T(0) ? dout : V<T>{}; });
}

// leaky relu: y = x > 0 ? x : slope * x   (slope at exactly 0, as PyTorch)
template <class T>
void leaky_fwd(const void* const* in, void* out, int64_t n, const void* p, bool stream) {
  const T slope = T(static_cast<const ActivationParams*>(p)->negative_slope);
  map_unary<T>(static_cast<const T*>(in[0]), static_cast<T*>(out), n, stream,
               [slope](V<T> x) { return x > T(0) ? x : x * slope; });
}

// leaky relu backward: dx = x > 0 ? dout : slope * dout
template <class T>
void leaky_bwd(const void* const* in, void* out, int64_t n, const void* p, bool stream) {
  const T slope = T(static_cast<const ActivationParams*>(p)->negative_slope);
  map_binary<T>(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<T*>(out), n, stream,
                [slope](V<T> dout, V<T> x) { return x > T(0) ? dout : dout * slope; });
}

// sigmoid: y = 1 / (1 + exp(-x)), evaluated without overflow (core/vmath.hpp)
template <class T>
void sigmoid_fwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_unary<T>(static_cast<const T*>(in[0]), static_cast<T*>(out), n, stream, [](V<T> x) { return vsigmoid<T>(x); });
}

// sigmoid backward from the output: dx = dout * y * (1 - y)
template <class T>
void sigmoid_bwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_binary<T>(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<T*>(out), n, stream,
                [](V<T> dout, V<T> y) { return dout * y * (T(1) - y); });
}

// tanh: y = tanh(x) via expm1 (core/vmath.hpp)
template <class T>
void tanh_fwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_unary<T>(static_cast<const T*>(in[0]), static_cast<T*>(out), n, stream, [](V<T> x) { return vtanh<T>(x); });
}

// tanh backward from the output: dx = dout * (1 - y^2)
template <class T>
void tanh_bwd(const void* const* in, void* out, int64_t n, const void*, bool stream) {
  map_binary<T>(static_cast<const T*>(in[0]), static_cast<const T*>(in[1]), static_cast<T*>(out), n, stream,
                [](V<T> dout, V<T> y) { return dout * (T(1) - y * y); });
}

}  // namespace
NK_KERNEL_NAMESPACE_END

NK_DEFINE_ISA_TABLE(ActivationKernels, activation_kernels) = {{
    {&nk::NK_ISA_NS::relu_fwd<float>, &nk::NK_ISA_NS::relu_fwd<double>},
    {&nk::NK_ISA_NS::relu_bwd<float>, &nk::NK_ISA_NS::relu_bwd<double>},
    {&nk::NK_ISA_NS::leaky_fwd<float>, &nk::NK_ISA_NS::leaky_fwd<double>},
    {&nk::NK_ISA_NS::leaky_bwd<float>, &nk::NK_ISA_NS::leaky_bwd<double>},
    {&nk::NK_ISA_NS::sigmoid_fwd<float>, &nk::NK_ISA_NS::sigmoid_fwd<double>},
    {&nk::NK_ISA_NS::sigmoid_bwd<float>, &nk::NK_ISA_NS::sigmoid_bwd<double>},
    {&nk::NK_ISA_NS::tanh_fwd<float>, &nk::NK_ISA_NS::tanh_fwd<double>},
    {&nk::NK_ISA_NS::tanh_bwd<float>, &nk::NK_ISA_NS::tanh_bwd<double>},
}};
