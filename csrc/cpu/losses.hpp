// Fused softmax cross-entropy kernels (csrc/cpu/losses.cpp): table of row-range kernels per ISA level.
// Reference: nnkernels.reference.losses; CUDA twin: csrc/cuda/losses.cu; test: tests/test_losses.py;
// bench: python -m nnkernels bench --ops losses
#pragma once
#include "core/common.hpp"
#include "core/isa_table.hpp"

namespace nk {

// Rows [r0, r1) of logits (row stride ld elements, unit column stride), labels[i] in [0, C).
// Writes dlogits rows (row stride ldd) = (softmax(row) - onehot(label)) * inv_n and returns
// the sum over the rows of -log softmax(row)[label], accumulated in float64, in row order.
// Each label is bounds-checked as it is read: a row whose label is outside [0, C) gets NaN
// (loss and gradient row) instead of an access outside the row.
using SoftmaxXentFn = double (*)(const void* logits, int64_t ld, const int64_t* labels, void* dlogits, int64_t ldd,
                                 int64_t r0, int64_t r1, int64_t C, double inv_n);

struct LossKernels {
  SoftmaxXentFn softmax_xent[kDTypeCount];  // [dtype_index]
};

}  // namespace nk

NK_DECLARE_ISA_TABLE(LossKernels, loss_kernels)
