// Shared device-side helpers for the CUDA kernels.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace nk {
namespace cuda {

inline cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

inline void throw_if_error(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Grid for a grid-stride loop over n items handled `per_thread` at a time.
inline unsigned grid_for(int64_t n, int block, int per_thread = 1) {
  int64_t blocks = (n + int64_t(block) * per_thread - 1) / (int64_t(block) * per_thread);
  if (blocks < 1) blocks = 1;
  if (blocks > 65535LL * 32) blocks = 65535LL * 32;
  return unsigned(blocks);
}

// 16-bit storage (issue 15): elements are loaded into float, computed in float and rounded back to
// nearest even, bit for bit as the CPU kernels (core/simd.hpp, core/float16.hpp): exact widening,
// NaN kept quiet with its sign and high payload (CUDA's __float2bfloat16_rn would give a canonical
// NaN), everything else rounded by CUDA's RNE conversions. DevStorage<S>::C is the compute type.
template <class S> struct DevStorage {
  using C = S;
  static __device__ __forceinline__ C load(S v) { return v; }
  static __device__ __forceinline__ S store(C v) { return v; }
};
template <> struct DevStorage<__half> {
  using C = float;
  static __device__ __forceinline__ float load(__half v) { return __half2float(v); }
  static __device__ __forceinline__ __half store(float v) {
    const uint32_t u = __float_as_uint(v);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u)
      return __ushort_as_half(uint16_t(((u >> 16) & 0x8000u) | 0x7E00u | ((u >> 13) & 0x3FFu)));
    return __float2half_rn(v);
  }
};
template <> struct DevStorage<__nv_bfloat16> {
  using C = float;
  static __device__ __forceinline__ float load(__nv_bfloat16 v) { return __uint_as_float(uint32_t(__bfloat16_as_ushort(v)) << 16); }
  static __device__ __forceinline__ __nv_bfloat16 store(float v) {
    const uint32_t u = __float_as_uint(v);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return __ushort_as_bfloat16(uint16_t((u >> 16) | 0x40u));
    return __ushort_as_bfloat16(uint16_t((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16));
  }
};

}  // namespace cuda
}  // namespace nk
