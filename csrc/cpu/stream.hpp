// Bandwidth kernels for the benchmark (copy, triad), float32, and the storage conversions
// between float32, float16 and bfloat16 (the core's rounding, tested bit for bit at every level).
#pragma once
#include "core/common.hpp"
#include "core/isa_table.hpp"

namespace nk {
struct StreamKernels {
  void (*copy)(const void* const*, void*, int64_t, const void*, bool);
  void (*triad)(const void* const*, void*, int64_t, const void*, bool);
  // convert[from][to], dtype_index order; float64 rows/columns are null (not a storage conversion).
  void (*convert[kDTypeCount][kDTypeCount])(const void* const*, void*, int64_t, const void*, bool);
};
}  // namespace nk
NK_DECLARE_ISA_TABLE(StreamKernels, stream_kernels)
