// Optimizer kernels (SGD, Adagrad, RMSprop, Adam/AdamW, EMA averaging, gradient-norm
// clipping): table of contiguous 1-D kernels per ISA level. The multi-tensor scheduling
// (one parallel region over a whole list of tensors) lives in csrc/drivers/optimizers.cpp.
#pragma once
#include "core/common.hpp"
#include "core/isa_table.hpp"

namespace nk {

// Hyperparameters of one update call, prepared on the host (bias corrections etc.).
struct OptimHyper {
  double lr = 0.0;
  double weight_decay = 0.0;
  double momentum = 0.0;      // sgd
  double dampening = 0.0;     // sgd
  double alpha = 0.0;         // rmsprop smoothing constant
  double eps = 0.0;           // adagrad / rmsprop / adam
  double beta1 = 0.0;         // adam
  double beta2 = 0.0;         // adam
  double step_size = 0.0;     // adam: lr / (1 - beta1^step)
  double inv_bc2_sqrt = 0.0;  // adam: 1 / sqrt(1 - beta2^step)
  double decay = 0.0;         // ema
  double scale = 1.0;         // clip_grad_norm: factor applied to the gradients
  int nesterov = 0;
  int eps_in_sqrt = 0;        // rmsprop: sqrt(v + eps) (TensorFlow) instead of sqrt(v) + eps (PyTorch)
  int decoupled = 0;          // adam: AdamW's decoupled weight decay
  int maximize = 0;           // sgd / adagrad / rmsprop / adam: ascend (the gradient's sign flipped), torch.optim's maximize
};

enum OptimOp : int { kSgd = 0, kSgdMomentum, kAdagrad, kRmsprop, kAdam, kEma, kScale, kAdamAmsgrad, kOptimOpCount };

// ptrs[k]: operand k at the first element of the piece, n elements, all contiguous.
//   kSgd: {p, g}   kSgdMomentum: {p, g, velocity}   kAdagrad: {p, g, sum_sq}   kRmsprop: {p, g, sq_avg}
//   kAdam: {p, g, exp_avg, exp_avg_sq}   kAdamAmsgrad: {p, g, exp_avg, exp_avg_sq, max_exp_avg_sq}
//   kEma: {avg, p}   kScale: {g}
using OptimUpdateFn = void (*)(void* const* ptrs, int64_t n, const OptimHyper* h);
// Sum of squares of x[0..n) accumulated in float64 (fixed order: result depends only on n and the ISA level).
using SumSqFn = double (*)(const void* x, int64_t n);

struct OptimizerKernels {
  OptimUpdateFn update[kOptimOpCount][2];  // [op][0 = float32, 1 = float64]
  SumSqFn sumsq[2];
};

}  // namespace nk

NK_DECLARE_ISA_TABLE(OptimizerKernels, optimizer_kernels)
