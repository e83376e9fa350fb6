// Activation kernels (forward and backward): table of contiguous 1-D kernels per ISA level.
#pragma once
#include "core/common.hpp"
#include "core/isa_table.hpp"

namespace nk {

struct ActivationParams {
  double negative_slope = 0.01;
  // sigmoid on float16 / bfloat16: the result's bits for each of the 65536 input patterns (set by
  // the CPU driver, drivers/activations.cpp; the kernels below AVX-512 look them up).
  const uint16_t* sigmoid16_table = nullptr;
};

enum ActivationOp : int {
  kRelu = 0, kReluBackward, kLeakyRelu, kLeakyReluBackward,
  kSigmoid, kSigmoidBackward, kTanh, kTanhBackward, kActivationOpCount
};

// fn(ins, out, n, params, stream): ins = {x} for forward, {dout, x_or_y} for backward.
using ActivationFn = void (*)(const void* const* ins, void* out, int64_t n, const void* params, bool stream);

struct ActivationKernels {
  ActivationFn fn[kActivationOpCount][kDTypeCount];  // [op][dtype_index]
};

}  // namespace nk

NK_DECLARE_ISA_TABLE(ActivationKernels, activation_kernels)
