// Per-ISA kernel tables. A family declares a struct of function pointers and one table
// per compiled level; kernels_for(active_isa()) picks the best one the CPU can run.
//
//   // csrc/cpu/activations.hpp
//   struct ActivationKernels { void (*relu_f32)(const float*, float*, int64_t); ... };
//   NK_DECLARE_ISA_TABLE(ActivationKernels, activation_kernels)
//   // csrc/cpu/activations.cpp (compiled per level)
//   NK_DEFINE_ISA_TABLE(ActivationKernels, activation_kernels) = { &relu<float>, ... };
#pragma once
#include "core/common.hpp"

#if defined(NK_HAVE_AVX2)
#define NK_IF_AVX2(...) __VA_ARGS__
#else
#define NK_IF_AVX2(...)
#endif
#if defined(NK_HAVE_AVX512)
#define NK_IF_AVX512(...) __VA_ARGS__
#else
#define NK_IF_AVX512(...)
#endif

#if defined(NK_KERNEL_TU)
// Kernel TUs see only their own level's table (NK_DEFINE_ISA_TABLE declares it).
#define NK_DECLARE_ISA_TABLE(Type, name)
#else
#define NK_DECLARE_ISA_TABLE(Type, name)                                              \
  namespace nk {                                                                      \
  namespace baseline { extern const Type name; }                                      \
  NK_IF_AVX2(namespace avx2 { extern const Type name; })                              \
  NK_IF_AVX512(namespace avx512 { extern const Type name; })                          \
  inline const Type& name##_for(Isa isa) {                                            \
    switch (isa) {                                                                    \
      NK_IF_AVX512(case Isa::avx512: return avx512::name;)                            \
      NK_IF_AVX2(case Isa::avx2: return avx2::name;)                                  \
      default: return baseline::name;                                                 \
    }                                                                                 \
  }                                                                                   \
  inline const Type& name() { return name##_for(active_isa()); }                      \
  }
#endif

#define NK_DEFINE_ISA_TABLE(Type, name) \
  namespace nk { namespace NK_ISA_NS { extern const Type name; } } \
  const nk::Type nk::NK_ISA_NS::name
