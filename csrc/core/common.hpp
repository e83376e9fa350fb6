// nnkernels core: types shared by every layer (kernels, bindings, CUDA launchers).
//
// Kernel translation units (csrc/cpu/*.cpp) are compiled once per instruction-set
// level with different -m flags. Any inline function they share with other TUs would
// be merged by the linker across levels (an ODR trap that leaks AVX-512 code into the
// baseline path), so kernel TUs include only this header, simd.hpp and C headers, and
// put everything they define inside NK_KERNEL_NS (nk::baseline, nk::avx2, nk::avx512).
#pragma once
#include <cstddef>
#include <cstdint>

#ifndef NK_ISA_NS
#define NK_ISA_NS host
#endif
#define NK_KERNEL_NAMESPACE_BEGIN namespace nk { namespace NK_ISA_NS {
#define NK_KERNEL_NAMESPACE_END } }

namespace nk {

// Element types. float16/bfloat16 are reserved so the dispatch tables keep their shape
// when half-precision kernels arrive; today they are rejected at the Python boundary.
enum class DType : int { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
  }
  return "?";
}

// Position of a dtype in the per-dtype kernel tables ({float32, float64}).
inline int dtype_index(DType d) { return d == DType::f64 ? 1 : 0; }
inline int64_t dtype_size(DType d) { return d == DType::f64 ? 8 : (d == DType::f32 ? 4 : 2); }

// Instruction-set levels, ordered: a CPU that runs level k runs every level below it.
enum class Isa : int { baseline = 0, avx2 = 1, avx512 = 2 };

// Host side (csrc/core/runtime.cpp): non-inline on purpose, see the note above.
Isa active_isa();
int max_threads();  // threads a parallel region may use now (nk.set_num_threads / OpenMP / threadpoolctl)

}  // namespace nk
