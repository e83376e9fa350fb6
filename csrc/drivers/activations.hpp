// Activation ops on any device: one function type, the CPU driver (drivers/activations.cpp, over
// the ISA tables of cpu/activations.cpp) and the CUDA launcher (cuda/activations.cu) registered.
// Operands arrive validated (bindings/activations.cpp); CUDA operands are C-contiguous.
#pragma once
#include "core/dispatch.hpp"
#include "core/view.hpp"
#include "cpu/activations.hpp"

namespace nk {
// ins = {x} (forward) or {dout, x_or_y} (backward), all of out's shape and dtype.
using ActivationImpl = void (*)(ActivationOp op, const ArrayView* ins, int n_in, const ArrayView& out,
                                const ActivationParams& params, const ExecContext& ctx);
}  // namespace nk
NK_DECLARE_DISPATCH(ActivationImpl, activation_stub)
