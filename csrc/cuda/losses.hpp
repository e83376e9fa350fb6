// Host-callable launcher of the CUDA fused softmax cross-entropy (csrc/cuda/losses.cu).
#pragma once
#include <cstdint>

namespace nk {
namespace cuda {
// logits, dlogits: contiguous (n, c) device arrays of dtype 0 = f32 / 1 = f64; labels: int64 (n,) in [0, c)
// (checked by the caller; the kernel checks each label again as it reads it: one outside [0, c) gives a NaN row).
// row_loss: float64 device workspace of n; loss: one float64 on the device (mean over rows). Runs on `stream`.
void launch_softmax_xent(int dtype, uintptr_t logits, uintptr_t labels, uintptr_t dlogits, int64_t n, int64_t c,
                         uintptr_t row_loss, uintptr_t loss, uintptr_t stream);
}  // namespace cuda
}  // namespace nk
