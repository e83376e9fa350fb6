// Fused softmax cross-entropy on any device: one function type, the CPU driver
// (drivers/losses.cpp, over the ISA table of cpu/losses.cpp) and the CUDA launcher
// (cuda/losses.cu) registered. Operands arrive validated (bindings/losses.cpp).
#pragma once
#include "core/dispatch.hpp"
#include "core/view.hpp"
#include "cpu/losses.hpp"

namespace nk {
// logits, dlogits: (n, c) of one dtype with unit column stride (CUDA: C-contiguous). labels: n
// int64 values on the logits' device that no write of the op can reach (CPU: the binding's private
// copy, checked against [0, c); CUDA: a device array the kernel bounds-checks as it reads it,
// giving a NaN row for a label outside [0, c)). loss: one float64 on the logits' device that
// receives the mean over the rows (NaN for n = 0). row_loss: CUDA workspace of max(n, 1) float64
// on the device (the CPU driver keeps its own per-chunk partials and gets null).
using SoftmaxXentImpl = void (*)(const ArrayView& logits, const int64_t* labels, const ArrayView& dlogits,
                                 double* loss, double* row_loss, const ExecContext& ctx);
}  // namespace nk
NK_DECLARE_DISPATCH(SoftmaxXentImpl, softmax_xent_stub)
