// The elementwise driver (pybind-free: CPU drivers in csrc/drivers use it; defined in array.cpp).
#pragma once
#include <cstdint>

#include "core/view.hpp"

namespace nk {

// Outputs of at least this many bytes are written with non-temporal stores (far larger than the
// caches): the one threshold of the elementwise driver and the normalization drivers.
constexpr int64_t kStreamBytes = int64_t(8) << 20;

// Elementwise driver. Kernels see contiguous 1-D runs: `fn(ins, out, n)` with up to three
// inputs. Contiguous operands are cut into fixed chunks and run in parallel; other
// layouts are iterated row by row over the innermost (coalesced) dimension, gathering
// strided rows into per-thread buffers. The GIL must already be released.
// `stream` asks for non-temporal stores (output far larger than the caches).
using ElementwiseFn = void (*)(const void* const* ins, void* out, int64_t n, const void* params, bool stream);
void run_elementwise(const ArrayView* ins, int n_in, const ArrayView& out, ElementwiseFn fn,
                     const void* params, int64_t grain_elems = 32768);

}  // namespace nk
