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
  double momentum = 0.0;      // sgd / rmsprop
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
  // 16-bit (float16 / bfloat16) parameters: the arithmetic is float32 (eps and the division too),
  // states are float32 (state_f32) or the params' dtype, and the updated parameter is rounded
  //   kRoundNearest: to nearest even;
  //   kRoundStochastic: stochastically (unbiased: up with probability the fraction of the
  //     dropped bits), with the 32-bit word 0 of Philox4x32-10 block (counter = (e, step), key = seed)
  //     for the element at flat index e of the call's tensor list (tensors end to end);
  //   kRoundMaster: the update runs on a float32 master copy (operand 2, states then float32),
  //     which then holds bitwise the float32 update, and the parameter is the master rounded to
  //     nearest even.
  int rounding = 0;
  int state_f32 = 0;
  uint64_t seed = 0;
  uint64_t rng_step = 0;      // the step in the Philox counter (0 for the functions without one)
};
enum OptimRounding : int { kRoundNearest = 0, kRoundStochastic = 1, kRoundMaster = 2 };

enum OptimOp : int { kSgd = 0, kSgdMomentum, kAdagrad, kRmsprop, kAdam, kEma, kScale, kAdamAmsgrad,
                     kRmspropMomentum, kRmspropCentered, kRmspropCenteredMomentum, kOptimOpCount };

// ptrs[k]: operand k at the first element of the piece, n elements, all contiguous.
//   kSgd: {p, g}   kSgdMomentum: {p, g, velocity}   kAdagrad: {p, g, sum_sq}   kRmsprop: {p, g, sq_avg}
//   kAdam: {p, g, exp_avg, exp_avg_sq}   kAdamAmsgrad: {p, g, exp_avg, exp_avg_sq, max_exp_avg_sq}
//   kRmspropMomentum: {p, g, sq_avg, velocity}   kRmspropCentered: {p, g, sq_avg, grad_avg}
//   kRmspropCenteredMomentum: {p, g, sq_avg, grad_avg, velocity}
//   kEma: {avg, p}   kScale: {g}
// With kRoundMaster the float32 master copy follows the gradient: {p, g, master, states...}.
// `index`: flat index of the piece's first element in the call's tensor list (stochastic rounding).
using OptimUpdateFn = void (*)(void* const* ptrs, int64_t n, const OptimHyper* h, int64_t index);
// Sum of squares of x[0..n) accumulated in float64 (fixed order: result depends only on n and the ISA level).
using SumSqFn = double (*)(const void* x, int64_t n);

struct OptimizerKernels {
  OptimUpdateFn update[kOptimOpCount][kDTypeCount];  // [op][dtype_index of the params]
  SumSqFn sumsq[kDTypeCount];
};

}  // namespace nk

NK_DECLARE_ISA_TABLE(OptimizerKernels, optimizer_kernels)
