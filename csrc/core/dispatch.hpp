// One dispatch point per op, after PyTorch's DispatchStub (aten/src/ATen/native/DispatchStub.h):
// an op family declares one function type per op and one stub of that type; the CPU driver
// (csrc/cpu/, csrc/core/) and the CUDA launcher (csrc/cuda/*.cu) register their implementation
// on it, and the binding, after validating its operands once for every device, calls
// `stub(ctx.device)(...)`. The stub holds plain function pointers (constant-initialised, so
// registrations in other translation units may run in any order during static initialisation).
//
//   // csrc/cpu/activations.hpp          using ActivationImpl = void (*)(...);
//                                        NK_DECLARE_DISPATCH(ActivationImpl, activation_stub)
//   // csrc/core or a driver .cpp        NK_DEFINE_DISPATCH(ActivationImpl, activation_stub)
//                                        NK_REGISTER_DISPATCH(activation_stub, cpu, &activation_cpu)
//   // csrc/cuda/activations.cu          NK_REGISTER_DISPATCH(activation_stub, cuda, &activation_cuda)
#pragma once
#include <stdexcept>
#include <string>

#include "core/view.hpp"

namespace nk {

template <class Fn> struct DispatchStub {
  Fn cpu = nullptr;
  Fn cuda = nullptr;
  const char* name = "";
  Fn operator()(const Device& d) const {
    if (!d.is_cuda()) return cpu;
    if (cuda == nullptr)
      throw std::runtime_error(std::string(name) +
                               ": this nnkernels build has no CUDA kernels (built without nvcc or with "
                               "NNKERNELS_CUDA=OFF); rebuild with a CUDA toolkit to use GPU arrays");
    return cuda;
  }
};

struct DispatchRegistrar {
  template <class Fn> DispatchRegistrar(Fn* slot, Fn fn) { *slot = fn; }
};

}  // namespace nk

#define NK_DECLARE_DISPATCH(FnType, name) \
  namespace nk { extern DispatchStub<FnType> name; }
#define NK_DEFINE_DISPATCH(FnType, name) \
  namespace nk { DispatchStub<FnType> name{nullptr, nullptr, #name}; }
#define NK_DISPATCH_CAT2(a, b) a##b
#define NK_DISPATCH_CAT(a, b) NK_DISPATCH_CAT2(a, b)
#define NK_REGISTER_DISPATCH(name, device, fn)                                                              \
  static const ::nk::DispatchRegistrar NK_DISPATCH_CAT(nk_dispatch_reg_##device##_, __LINE__)(&::nk::name.device, fn)
