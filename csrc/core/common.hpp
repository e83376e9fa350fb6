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

// Element types. float16 (IEEE binary16, NumPy's float16) and bfloat16 (ml_dtypes.bfloat16)
// are storage formats: kernels load them into float32, compute in float32 and round back to
// nearest even (core/simd.hpp); families that do not take them refuse them at the boundary.
enum class DType : int { f32 = 0, f64 = 1, f16 = 2, bf16 = 3 };
constexpr int kDTypeCount = 4;

// 16-bit storage elements, as bit patterns. Plain structs without member functions (see the note
// above: the conversions live in core/simd.hpp, inside each level's namespace).
struct float16_t { uint16_t bits; };
struct bfloat16_t { uint16_t bits; };
// The type arithmetic on elements of T happens in (and statistics / parameters are kept in).
template <class T> struct ComputeOf { using type = T; };
template <> struct ComputeOf<float16_t> { using type = float; };
template <> struct ComputeOf<bfloat16_t> { using type = float; };
template <class T> using compute_of_t = typename ComputeOf<T>::type;

inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "float32";
    case DType::f64: return "float64";
    case DType::f16: return "float16";
    case DType::bf16: return "bfloat16";
  }
  return "?";
}

// Position of a dtype in the per-dtype kernel tables ([op][dtype], kDTypeCount columns in the
// order of DType: float32, float64, float16, bfloat16).
inline int dtype_index(DType d) { return int(d); }
inline int64_t dtype_size(DType d) { return d == DType::f64 ? 8 : (d == DType::f32 ? 4 : 2); }
inline bool is_16bit(DType d) { return d == DType::f16 || d == DType::bf16; }

// Instruction-set levels, ordered: a CPU that runs level k runs every level below it.
enum class Isa : int { baseline = 0, avx2 = 1, avx512 = 2 };

// Host side (csrc/core/runtime.cpp): non-inline on purpose, see the note above.
Isa active_isa();
int max_threads();  // threads a parallel region may use now (nk.set_num_threads / OpenMP / threadpoolctl)
// Whether the AVX-512 kernels round float32 to bfloat16 with the AVX-512 BF16 instruction
// (VCVTNEPS2BF16): true when the CPU reports avx512_bf16; the tests switch it off to compare the
// integer fallback bit for bit. A variable rather than a function, read by kernel TUs of every level.
extern bool g_use_avx512_bf16;

}  // namespace nk
