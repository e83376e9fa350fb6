// Shared device-side helpers for the CUDA kernels.
#pragma once
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

}  // namespace cuda
}  // namespace nk
