// Weight-initialisation fill on any device: one function type, the CPU driver (drivers/init.cpp,
// over the ISA table of cpu/init.cpp) and the CUDA launcher (cuda/init.cu) registered. Both
// compute element i of the C-order flattening from (seed, i) alone (layout: cpu/init.hpp), so
// every device, thread count and ISA level gives the same bits.
#pragma once
#include "core/dispatch.hpp"
#include "core/view.hpp"
#include "cpu/init.hpp"

namespace nk {
// out: a writeable float32/float64/float16/bfloat16 array (CPU: any strides without self-overlap; CUDA: C-contiguous).
using InitFillImpl = void (*)(const ArrayView& out, const InitParams& p, const ExecContext& ctx);
}  // namespace nk
NK_DECLARE_DISPATCH(InitFillImpl, init_fill_stub)
