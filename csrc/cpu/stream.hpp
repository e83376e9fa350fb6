// Bandwidth kernels for the benchmark (copy, triad), float32.
#pragma once
#include "core/common.hpp"
#include "core/isa_table.hpp"

namespace nk {
struct StreamKernels {
  void (*copy)(const void* const*, void*, int64_t, const void*, bool);
  void (*triad)(const void* const*, void*, int64_t, const void*, bool);
};
}  // namespace nk
NK_DECLARE_ISA_TABLE(StreamKernels, stream_kernels)
